"""lm.dots: bf16 products with a float32 result on CPU (the native kernel's form), the plain product
elsewhere; values and gradients those of the plain bf16 product."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lm import dots, precision
from lm.model import matmul_2d

BF16 = jnp.bfloat16


def _operands(seed=0, m=24, k=40, n=16, integer=False):
    rng = np.random.default_rng(seed)
    if integer:       # small integers: every product and sum is exact in float32 and in bf16
        x, w = rng.integers(-3, 4, (m, k)), rng.integers(-3, 4, (k, n))
    else:
        x, w = rng.normal(size=(m, k)), rng.normal(size=(k, n))
    return jnp.asarray(x, jnp.float32), jnp.asarray(w, jnp.float32)


def _plain_loss(x, w, g):
    return jnp.sum((x.astype(BF16) @ w.astype(BF16)).astype(jnp.float32) * g)


def _dots_loss(x, w, g):
    return jnp.sum(dots.dot_2d(x.astype(BF16), w.astype(BF16)).astype(jnp.float32) * g)


def test_values_and_gradients_are_those_of_the_plain_product_exactly_on_integers():
    x, w = _operands(integer=True)
    g = jnp.asarray(np.random.default_rng(1).integers(-2, 3, (24, 16)), jnp.float32)
    assert dots.dot_2d(x.astype(BF16), w.astype(BF16)).dtype == BF16
    np.testing.assert_array_equal(np.asarray(dots.dot_2d(x.astype(BF16), w.astype(BF16)), np.float32),
                                  np.asarray(x @ w))
    plain = jax.jit(jax.grad(_plain_loss, argnums=(0, 1)))(x, w, g)
    ours = jax.jit(jax.grad(_dots_loss, argnums=(0, 1)))(x, w, g)
    for p, o in zip(plain, ours):
        assert o.dtype == p.dtype == jnp.float32
        np.testing.assert_array_equal(np.asarray(o), np.asarray(p))


def test_values_and_gradients_within_bf16_rounding_on_real_numbers():
    x, w = _operands(seed=2, m=64, k=256, n=48)
    g = jnp.asarray(np.random.default_rng(3).normal(size=(64, 48)), jnp.float32)
    exact = jax.grad(lambda x, w: jnp.sum((x.astype(BF16).astype(jnp.float32) @ w.astype(BF16).astype(jnp.float32)) * g),
                     argnums=(0, 1))(x, w)
    y = dots.dot_2d(x.astype(BF16), w.astype(BF16)).astype(jnp.float32)
    ref = x.astype(BF16).astype(jnp.float32) @ w.astype(BF16).astype(jnp.float32)
    assert float(jnp.max(jnp.abs(y - ref) / (jnp.abs(ref) + 1e-3))) <= 2 ** -8     # one bf16 rounding
    for e, o in zip(exact, jax.jit(jax.grad(_dots_loss, argnums=(0, 1)))(x, w, g)):
        scale = float(jnp.max(jnp.abs(e)))
        assert float(jnp.max(jnp.abs(o - e))) <= 2 ** -7 * scale


def _dot_types(hlo: str) -> list[str]:
    """'operand, operand -> result' element types of each dot_general in StableHLO text."""
    return [", ".join(re.findall(r"x(bf16|f32)>", m)) for m in re.findall(r"stablehlo\.dot_general[^\n]*", hlo)]


@pytest.mark.parametrize("platform, expected", [("cpu", "bf16, bf16, f32"), ("cuda", "bf16, bf16, bf16"),
                                                ("tpu", "bf16, bf16, bf16")])
def test_each_platform_gets_its_form_forward_and_backward(platform, expected):
    """Lowered for CPU every product (forward, and both of the gradient's) takes bf16 operands and
    gives a float32 result (YNNPACK's native kernel); lowered for a GPU or TPU (no such device
    needed) the plain bf16 product. No float32 x float32 product appears on any platform."""
    x, w = _operands()
    grad = jax.jit(jax.grad(lambda x, w: jnp.sum(matmul_2d(x, w, 1, BF16).astype(jnp.float32) ** 2), argnums=(0, 1)))
    hlo = grad.trace(x, w).lower(lowering_platforms=(platform,)).as_text()
    types = _dot_types(hlo)
    assert len(types) == 3 and set(types) == {expected}, types


def test_float32_is_the_plain_product_and_mixed_dtypes_are_refused():
    x, w = _operands()
    hlo = jax.jit(lambda x, w: dots.dot_2d(x, w)).lower(x, w).as_text()
    assert _dot_types(hlo) == ["f32, f32, f32"] and "platform" not in hlo.lower().split("dot_general")[0][-200:]
    with pytest.raises(ValueError, match="one dtype"):
        dots.dot_2d(x, w.astype(BF16))


@pytest.mark.skipif("avx512_bf16" not in precision.cpu_flags(),
                    reason="YNNPACK's bf16 dots were measured on an AVX-512-BF16 CPU only; this CPU has no avx512_bf16")
def test_cpu_bf16_train_step_runs_every_dot_in_ynnpack():
    """The compiled CPU train step of a bf16 model: no product is left to XLA's own dot emitter
    (which upcasts bf16 to float32), the weight gradients included; a float32 step (YNNPACK off)
    shows what such a dot looks like in the text."""
    import optax

    from lm.config import MeshConfig, ModelConfig
    from lm.sharding import make_mesh
    from lm.step import compile_steps

    def own_dots(dtype: str) -> list[str]:
        cfg = ModelConfig(vocab_size=256, d_model=64, n_layers=2, n_heads=2, max_seq_len=32, d_ff=128,
                          compute_dtype=dtype)
        c = compile_steps(cfg, optax.adamw(1e-3), make_mesh(MeshConfig(data=1), jax.devices()[:1]))
        state = c.init(jax.random.PRNGKey(0))
        text = c.train_step.lower(state, np.zeros((4, 33), np.int32)).compile().as_text()
        return [line for line in text.splitlines() if re.search(r"= \S+ dot\(", line) and "ROOT" not in line]

    assert own_dots("float32")
    assert own_dots("bfloat16") == []


def test_bf16_step_sharded_over_eight_devices_matches_one_device(n_devices):
    """lm.dots under SPMD partitioning (data x fsdp x tensor on 8 simulated devices): the bf16 train
    step's losses and weights follow the one-device step's within bf16 rounding."""
    import optax

    from lm import sharding as sh
    from lm.config import MeshConfig, ModelConfig
    from lm.step import compile_steps

    cfg = ModelConfig(vocab_size=64, d_model=64, n_layers=2, n_heads=4, n_kv_heads=2, max_seq_len=32,
                      compute_dtype="bfloat16")

    def run(mesh_cfg: MeshConfig, n: int):
        c = compile_steps(cfg, optax.adamw(3e-3), sh.make_mesh(mesh_cfg, jax.devices()[:n]))
        state, rng, losses = c.init(jax.random.PRNGKey(0)), np.random.default_rng(0), []
        for _ in range(4):
            batch = rng.integers(0, 64, (16, 33)).astype(np.int32)
            state, metrics = c.train_step(state, jax.device_put(batch, c.batch_sharding))
            losses.append(float(metrics["loss"]))
        return np.array(losses), state

    assert n_devices == 8
    (one, s1), (eight, s8) = run(MeshConfig(1, 1, 1), 1), run(MeshConfig(data=2, fsdp=2, tensor=2), 8)
    np.testing.assert_allclose(eight, one, rtol=2e-3)
    for a, b in zip(jax.tree.leaves(s8.params), jax.tree.leaves(s1.params)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=2e-2)
