"""The compute dtype of a run: `ModelConfig.compute_dtype="auto"` made concrete, deterministically.

Which dtype trains faster depends on the machine, not on the model code: accelerators want
bfloat16, while on a CPU the ranking depends on the machine and the width (the AVX-512-BF16 EPYC runs
d256-d512 steps faster in bfloat16 since its bf16 dots reach YNNPACK's native kernel (lm.dots), d64
slower; an AVX2 VM ran d256-d1024 steps 1.2-1.6x faster in bfloat16 but d64 slower; BENCHMARKS.md). "auto" is read from a TABLE of the
jax platform and the CPU's instruction-set flags (/proc/cpuinfo, what `lscpu` prints), never from a
stopwatch: the same command on the same machine trains in the same dtype whatever the load.

- `dtype_name(cfg)` / `dtype_of(cfg)`, for library calls (model.forward(params, x, ModelConfig())):
  the table at cfg.d_model.
- `resolve(...)`, for a run (lm.train) or a sweep: in order, an explicit value; the dtype recorded
  in the run's (or sweep's) folder, so a resumed run keeps what it started with; the table. It
  returns a record of how it decided (`Choice.record()`), which the run writes to result.json.
- `probe(...)`: a timing of forward+backward of one MLP block in both dtypes, ONLY on request
  (`python -m experiments.bench.dtype` prints its recommendation beside the table's; a run never
  calls it). Set the dtype it recommends explicitly if you want it.
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
"""'auto' per jax backend; a CPU's rows of CPU_TABLE come first."""
ACCELERATORS = ("gpu", "cuda", "rocm", "tpu")
CPUINFO = "/proc/cpuinfo"


@dataclasses.dataclass(frozen=True)
class CpuRule:
    """One row of CPU_TABLE: `dtype` when the CPU has every flag of `requires`, none of `excludes`,
    and the model is at least `min_d_model` wide."""

    requires: tuple[str, ...]
    excludes: tuple[str, ...]
    min_d_model: int
    dtype: str
    evidence: str
    """The measurement behind the row (BENCHMARKS.md)."""

    def matches(self, flags: frozenset[str], d_model: int) -> bool:
        return (set(self.requires) <= flags and not set(self.excludes) & flags
                and d_model >= self.min_d_model)

    def name(self) -> str:
        return ("+".join(self.requires) + "".join(f" -{f}" for f in self.excludes)
                + (f" d_model>={self.min_d_model}" if self.min_d_model else ""))


CPU_TABLE = (
    CpuRule(("avx512_bf16",), (), 256, "bfloat16",
            "2-core AMD EPYC, 2026-12-06, bf16 dots as lm.dots (YNNPACK's bf16 kernel): train step "
            "bf16/f32 CPU seconds on one core 1.17x d256, 1.22x d512 (issue 27)"),
    CpuRule(("avx512_bf16",), (), 0, "float32",
            "2-core AMD EPYC, 2026-12-06, bf16 dots as lm.dots: train step bf16/f32 CPU seconds on "
            "one core 0.96x d64, 1.09x d128 (issue 27)"),
    CpuRule(("avx2",), ("avx512f",), 256, "bfloat16",
            "2-core AVX2 VM, 2026-11-26: train step bf16/f32 1.56x d256, 1.34x d512, 1.17x d1024"),
    CpuRule(("avx2",), ("avx512f",), 0, "float32",
            "2-core AVX2 VM, 2026-11-26: train step bf16/f32 0.74x d64, 1.03x d128"),
)
"""CPU 'auto', first matching row wins; a CPU no row matches (unmeasured: AMX, AVX-512 without
BF16, ARM) gets PLATFORM_DTYPES['cpu'], float32."""
TABLE_FLAGS = frozenset(f for rule in CPU_TABLE for f in rule.requires + rule.excludes) | {"amx_bf16"}
"""The flags the table reads (recorded with a decision)."""


def parse_cpu_flags(cpuinfo: str) -> frozenset[str]:
    """The first processor's instruction-set flags in /proc/cpuinfo text ('flags' on x86,
    'Features' on ARM), lower case; empty when there is none."""
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip().lower() in ("flags", "features"):
            return frozenset(value.lower().split())
    return frozenset()


@functools.lru_cache(maxsize=None)
def cpu_flags(path: str = CPUINFO) -> frozenset[str]:
    """parse_cpu_flags of `path` (empty where it cannot be read: not Linux)."""
    try:
        with open(path) as f:
            return parse_cpu_flags(f.read())
    except OSError:
        return frozenset()


def cpu_rule(flags: frozenset[str], d_model: int) -> CpuRule | None:
    """The first CPU_TABLE row matching, or None."""
    return next((rule for rule in CPU_TABLE if rule.matches(flags, d_model)), None)


def table_dtype(platform: str, d_model: int, flags: frozenset[str] | None = None) -> str:
    """'auto' for a jax platform: accelerators by PLATFORM_DTYPES, a CPU by CPU_TABLE on its
    `flags` (default: this machine's) at `d_model`; unknown platforms -> float32."""
    if platform != "cpu":
        return PLATFORM_DTYPES.get(platform, "float32")
    rule = cpu_rule(cpu_flags() if flags is None else flags, d_model)
    return rule.dtype if rule else PLATFORM_DTYPES["cpu"]


def platform_dtype(platform: str | None = None, d_model: int = 512) -> str:
    """table_dtype on this machine for a jax platform (default: jax.default_backend())."""
    return table_dtype(platform or jax.default_backend(), d_model)


def dtype_name(cfg: Any, platform: str | None = None) -> str:
    """cfg.compute_dtype ('float32' | 'bfloat16'), with 'auto' read from the table at cfg.d_model."""
    name = cfg.compute_dtype
    return platform_dtype(platform, cfg.d_model) if name == "auto" else name


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
    'platform' (accelerator table), 'table' (CPU_TABLE on the CPU's flags) or 'probe' (a timing,
    only when asked for: `probe`)."""
    platform: str
    """jax.default_backend() when it was decided."""
    probe: dict[str, Any] | None = None
    """The probe's shape and best seconds per dtype (by == 'probe' only)."""
    cpu: dict[str, Any] | None = None
    """by == 'table': the table flags the CPU has and the row that matched (None: no row)."""

    def record(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


MARGIN = 1.05
"""bfloat16 wins the probe only when float32 takes at least this many times as long."""
MAX_PROBE_TOKENS = 4096
MIN_PROBE_TOKENS = 256
PROBE_FLOPS = 3e9
"""FLOPs of one timed probe call at most (fewer rows for wide models: the probe stays < ~1 s)."""
REPEATS = 3


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
    at least MARGIN faster. Cached per process and shape (`platform` is part of the key only).
    Only on request (experiments/bench/dtype.py): its answer depends on the load, so no run calls it."""
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


def table_choice(platform: str, d_model: int, flags: frozenset[str] | None = None) -> Choice:
    """table_dtype as a Choice: by 'platform' on accelerators, by 'table' on a CPU (with the table
    flags it has and the row that matched)."""
    if platform != "cpu":
        return Choice(table_dtype(platform, d_model), "platform", platform)
    flags = cpu_flags() if flags is None else flags
    rule = cpu_rule(flags, d_model)
    cpu = {"flags": sorted(flags & TABLE_FLAGS), "d_model": d_model, "rule": rule.name() if rule else None}
    return Choice(table_dtype(platform, d_model, flags), "table", platform, cpu=cpu)


def resolve(requested: str, *, recorded: str | None = None, tokens: int = MAX_PROBE_TOKENS,
            d_model: int = 512, d_ff: int | None = None, platform: str | None = None) -> Choice:
    """The concrete dtype for a run that asks for `requested`: an explicit value as it is; for
    'auto' the `recorded` one (what the run or sweep folder's config says), else the table
    (`table_choice`) at d_model. Deterministic: no timing (`tokens` and `d_ff`, the run's shape,
    are accepted for callers that pass them; the table does not read them)."""
    platform = platform or jax.default_backend()
    if requested != "auto":
        return Choice(requested, "explicit", platform)
    if recorded is not None and recorded != "auto":
        return Choice(recorded, "recorded", platform)
    return table_choice(platform, d_model)


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
    processes process 0's decision is used everywhere (their CPUs' flags could differ)."""
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
