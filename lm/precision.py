"""The compute dtype of a run: `ModelConfig.compute_dtype="auto"` made concrete.

Which dtype trains faster depends on the machine, not on the model code: accelerators want
bfloat16, while on a CPU the ranking flips between machines (an AVX-512 EPYC ran the step faster in
float32; an AVX2 VM ran it 1.3-1.6x faster in bfloat16 although its bare bf16 matmul was slower, see
BENCHMARKS.md). So "auto" means:

- `dtype_name(cfg)` / `dtype_of(cfg)`, for library calls (model.forward(params, x, ModelConfig())):
  the per-platform table, deterministic and free: accelerators -> bfloat16, CPU -> float32.
- `resolve(...)`, for a run (lm.train) or a sweep: in order, an explicit value; the dtype recorded
  in the run's (or sweep's) folder, so a resumed run keeps what it started with; the platform table
  on accelerators; on a CPU a cheap probe (`probe`) that times forward+backward of one MLP block at
  the run's shapes in both dtypes and picks bfloat16 only when it is at least `MARGIN` faster.
  It returns a record of how it decided (`Choice.record()`), which the run writes to result.json.

The probe is a block, not a bare matmul, because a bare matmul mispredicts (on the AVX2 VM bf16
matmuls were slower yet bf16 steps faster): it includes the casts, the activation and the backward
the model runs. It costs 0.7-1.1 s at d_model 64-512 (2 busy cores; ~2 s at 1024) and on the AVX-512
EPYC picked the faster step dtype (float32) at d64, d256 and d512 (experiments/bench/step.py --dtypes auto).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

CONCRETE = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
"""The concrete compute dtypes by name."""
PLATFORM_DTYPES = {"gpu": "bfloat16", "cuda": "bfloat16", "rocm": "bfloat16", "tpu": "bfloat16",
                   "cpu": "float32"}
"""'auto' per jax backend without a probe (a CPU's probe may pick bfloat16 instead)."""
ACCELERATORS = ("gpu", "cuda", "rocm", "tpu")
MARGIN = 1.05
"""bfloat16 wins the CPU probe only when float32 takes at least this many times as long."""
MAX_PROBE_TOKENS = 4096
MIN_PROBE_TOKENS = 256
PROBE_FLOPS = 3e9
"""FLOPs of one timed probe call at most (fewer rows for wide models: the probe stays < ~1 s)."""
REPEATS = 3


def platform_dtype(platform: str | None = None) -> str:
    """The table's dtype for a jax platform (default: jax.default_backend()); unknown ones -> float32."""
    return PLATFORM_DTYPES.get(platform or jax.default_backend(), "float32")


def dtype_name(cfg: Any, platform: str | None = None) -> str:
    """cfg.compute_dtype ('float32' | 'bfloat16'), with 'auto' read from the platform table."""
    name = cfg.compute_dtype
    return platform_dtype(platform) if name == "auto" else name


def dtype_of(cfg: Any, platform: str | None = None) -> jnp.dtype:
    """The jnp dtype activations and matmuls of `cfg` (a ModelConfig) use."""
    return CONCRETE[dtype_name(cfg, platform)]


@dataclasses.dataclass(frozen=True)
class Choice:
    """How a run's compute dtype was decided."""

    dtype: str
    """The concrete dtype: 'float32' or 'bfloat16'."""
    by: str
    """'explicit' (the config named it), 'recorded' (the run/sweep folder's config did),
    'platform' (accelerator table) or 'probe' (CPU timing)."""
    platform: str
    """jax.default_backend() when it was decided."""
    probe: dict[str, Any] | None = None
    """The probe's shape and best seconds per dtype (by == 'probe' only)."""

    def record(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _mlp_block_grad(dtype):
    """jit'd grad of one pre-norm MLP block the way the model runs it: float32 residual and norm,
    the matmuls and activation in `dtype` from float32 weights, the output added back in float32."""

    def loss(w_up_DxF, w_down_FxD, x_TxD):
        normed = x_TxD * jax.lax.rsqrt(jnp.mean(x_TxD * x_TxD, axis=-1, keepdims=True) + 1e-6)
        h_TxF = jax.nn.gelu(normed.astype(dtype) @ w_up_DxF.astype(dtype))
        y_TxD = x_TxD + (h_TxF @ w_down_FxD.astype(dtype)).astype(jnp.float32)
        return jnp.mean(y_TxD * y_TxD)

    return jax.jit(jax.grad(loss, argnums=(0, 1, 2)))


def probe_tokens(tokens: int, d_model: int, d_ff: int) -> int:
    """Rows the probe times: the run's tokens per step, at most MAX_PROBE_TOKENS and, unless that
    leaves fewer than MIN_PROBE_TOKENS, PROBE_FLOPS per call (forward+backward of two matmuls:
    12 * d_model * d_ff FLOPs a row); a multiple of 8."""
    by_flops = max(MIN_PROBE_TOKENS, int(PROBE_FLOPS // (12 * d_model * d_ff)))
    return max(8, min(tokens, MAX_PROBE_TOKENS, by_flops) // 8 * 8)


@functools.lru_cache(maxsize=None)
def probe(tokens: int, d_model: int, d_ff: int, platform: str = "cpu") -> Choice:
    """Time forward+backward of one MLP block ([tokens, d_model] x [d_model, d_ff], see
    `probe_tokens`) in float32 and bfloat16, alternating, best of REPEATS each; bfloat16 only when
    at least MARGIN faster. Cached per process and shape (`platform` is part of the key only)."""
    rows = probe_tokens(tokens, d_model, d_ff)
    rng = np.random.default_rng(0)
    args = tuple(jnp.asarray(rng.standard_normal(shape, np.float32) * scale) for shape, scale in
                 (((d_model, d_ff), d_model ** -0.5), ((d_ff, d_model), d_ff ** -0.5), ((rows, d_model), 1.0)))
    fns = {name: _mlp_block_grad(dt) for name, dt in CONCRETE.items()}
    best = {name: float("inf") for name in fns}
    for fn in fns.values():
        jax.block_until_ready(fn(*args))                     # compile and warm up
    for _ in range(REPEATS):
        for name, fn in fns.items():                         # alternate: drift hits both alike
            t0 = time.perf_counter()
            jax.block_until_ready(fn(*args))
            best[name] = min(best[name], time.perf_counter() - t0)
    dtype = "bfloat16" if best["float32"] >= MARGIN * best["bfloat16"] else "float32"
    timings = {"rows": rows, "d_model": d_model, "d_ff": d_ff, "margin": MARGIN,
               "float32_s": best["float32"], "bfloat16_s": best["bfloat16"]}
    return Choice(dtype, "probe", platform, timings)


def resolve(requested: str, *, recorded: str | None = None, tokens: int = MAX_PROBE_TOKENS,
            d_model: int = 512, d_ff: int | None = None, platform: str | None = None) -> Choice:
    """The concrete dtype for a run that asks for `requested`: an explicit value as it is; for
    'auto' the `recorded` one (what the run or sweep folder's config says), the platform table on
    accelerators, else the CPU probe at the run's shape (tokens per step, d_model, d_ff)."""
    platform = platform or jax.default_backend()
    if requested != "auto":
        return Choice(requested, "explicit", platform)
    if recorded is not None and recorded != "auto":
        return Choice(recorded, "recorded", platform)
    if platform != "cpu":
        return Choice(platform_dtype(platform), "platform", platform)
    return probe(tokens, d_model, d_ff or 4 * d_model, platform)


def _recorded_model_dtype(path: str) -> str | None:
    """model.compute_dtype of the config.json at `path`, or None (no file, unreadable, absent)."""
    if not os.path.isfile(path):
        return None
    try:
        with open(path) as f:
            value = json.load(f).get("model", {}).get("compute_dtype")
    except (OSError, ValueError, AttributeError):
        return None
    return value if value in CONCRETE else None


def resolve_train_config(cfg: Any) -> tuple[Any, Choice]:
    """(cfg with a concrete model.compute_dtype, how it was decided) for a TrainConfig. The recorded
    dtype is the run folder's config.json, else (a branch) its init_from source run's. With several
    processes process 0's decision is used everywhere (their probes could disagree)."""
    from lm.distributed import broadcast_json
    model = cfg.model
    recorded = _recorded_model_dtype(os.path.join(cfg.out_dir, "config.json"))
    if recorded is None and cfg.init_from is not None:
        recorded = _recorded_model_dtype(os.path.join(cfg.init_from.rpartition("@")[0], "config.json"))
    choice = resolve(model.compute_dtype, recorded=recorded, tokens=cfg.batch_size * cfg.data.seq_len,
                     d_model=model.d_model, d_ff=model.ff_size)
    if model.compute_dtype == "auto" and jax.process_count() > 1:
        choice = Choice(**broadcast_json(choice.record()))
    model = dataclasses.replace(model, compute_dtype=choice.dtype)
    return dataclasses.replace(cfg, model=model), choice
