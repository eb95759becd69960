"""Matrix products in a low-precision compute dtype, in the form each platform runs fastest.

`dot_2d(x_MxK, w_KxN)` is `x @ w` for two arrays of one dtype. In float32 it is exactly that. In a
narrower dtype (bfloat16) every platform accumulates in float32 and rounds the result to the
operands' dtype; what differs is the program that asks for it:

- **CPU** (XLA 0.10): a dot of two bfloat16 arrays with a bfloat16 result is rewritten to convert
  both operands to float32, multiply in float32 and convert back, so it is never faster than
  float32. The one native bfloat16 kernel is YNNPACK's, and XLA hands it only dots whose result is
  float32 (`preferred_element_type=float32`). So on CPU the product is asked for with a float32
  result and rounded afterwards, and its gradient (a custom VJP) asks for the two transposed
  products the same way, on the bfloat16 cotangent: without it JAX's own transpose would multiply
  the float32 cotangent by an upcast operand, a float32 dot again. The values are those of the
  plain form (float32 accumulation rounded to the dtype, the weight gradient rounded too); only
  the summation order of the kernel differs. The CPU train step compiles its dots as YNNPACK
  single dots for such models (lm.xla_env.CPU_COMPILE_OPTIONS["train_step_lowp"]).
- **GPU, TPU**: the plain product, whose kernels already accumulate in float32.

`jax.lax.platform_dependent` picks the branch when the program is lowered for its platform, so
the compiler of either platform never sees the other branch. Figures in BENCHMARKS.md (issue 27).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

_MK_KN = (((1,), (0,)), ((), ()))   # [M, K] x [K, N] -> [M, N]
_MN_KN = (((1,), (1,)), ((), ()))   # [M, N] x [K, N] -> [M, K]   (the cotangent times w^T)


def _product(a: jax.Array, b: jax.Array, dims, dtype) -> jax.Array:
    """dot_general(a, b) accumulated and returned in float32, rounded to `dtype`."""
    return lax.dot_general(a, b, dims, preferred_element_type=jnp.float32).astype(dtype)


@jax.custom_vjp
def _dot_f32_result(x_MxK: jax.Array, w_KxN: jax.Array) -> jax.Array:
    return _product(x_MxK, w_KxN, _MK_KN, x_MxK.dtype)


def _forward(x_MxK, w_KxN):
    return _dot_f32_result(x_MxK, w_KxN), (x_MxK, w_KxN)


def _backward(residuals, g_MxN):
    x_MxK, w_KxN = residuals
    g_MxN = g_MxN.astype(x_MxK.dtype)
    # The weight gradient x^T g contracts both operands' leading axis, a layout YNNPACK does not
    # take (XLA then upcasts it to a float32 dot): x^T is laid out first, behind a barrier so that
    # XLA does not fold the transpose back into the product.
    x_KxM = lax.optimization_barrier(x_MxK.T)
    return _product(g_MxN, w_KxN, _MN_KN, x_MxK.dtype), _product(x_KxM, g_MxN, _MK_KN, w_KxN.dtype)


_dot_f32_result.defvjp(_forward, _backward)


def dot_2d(x_MxK: jax.Array, w_KxN: jax.Array) -> jax.Array:
    """x @ w: [M, K] x [K, N] -> [M, N], both operands and the result in x's dtype (see the module
    docstring for how a dtype narrower than float32 is computed on each platform)."""
    if x_MxK.dtype != w_KxN.dtype:
        raise ValueError(f"dot_2d needs operands of one dtype, got {x_MxK.dtype} and {w_KxN.dtype}")
    if x_MxK.dtype == jnp.float32 or not jnp.issubdtype(x_MxK.dtype, jnp.floating):
        return x_MxK @ w_KxN
    return lax.platform_dependent(x_MxK, w_KxN, cpu=_dot_f32_result, default=jnp.matmul)
