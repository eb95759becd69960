"""The XLA flags this project pins, in one place, and how they reach XLA.

XLA reads `XLA_FLAGS` once, when JAX starts a backend (the first array or compile, not `import
jax`), so the command-line entry points (`lm-train`, the sweep's worker processes, the benchmarks)
call `apply()` before any JAX work. A flag the user already put in XLA_FLAGS is never overridden:
the user's value wins, and `LM_NO_PINNED_XLA_FLAGS=1` turns the pinning off altogether (to measure
without it). Library code (`lm.train.train`, tests, notebooks) does not touch the environment.

PINNED_CPU_FLAGS holds the flags that measured faster on the CPU training step, each measured on
its own against the step without it (`python -m experiments.bench.flags`; figures, machine and
date in BENCHMARKS.md, "XLA CPU flags"). A flag that did not move the step beyond the noise of a
same-process comparison is not pinned: a flag costs compile-cache keys and portability across
jaxlib versions (XLA aborts at start-up on a flag it does not know).

Options that only some programs should get, or that XLA can take per compilation, are
`CPU_COMPILE_OPTIONS`: `compile_options(platform)` hands them to `jax.jit(..., compiler_options=...)`
for the training programs (init, train step, eval step: lm.step.compile_steps) when their mesh is
on CPU. Being per compilation, they also hold in library use (tests, notebooks) and never reach a
GPU or TPU compilation. The same rules apply: the user's XLA_FLAGS win (an option whose flag is
named there is left out) and `LM_NO_PINNED_XLA_FLAGS=1` turns them off.
"""

from __future__ import annotations

import os
from typing import Mapping, MutableMapping

PINNED_CPU_FLAGS: tuple[str, ...] = ()
"""`--name=value` flags added to XLA_FLAGS on every backend (XLA ignores CPU flags elsewhere)."""

CPU_COMPILE_OPTIONS: dict[str, dict[str, object]] = {
    # LLVM at -O2 instead of XLA's default -O3: each program compiles faster (init ~1.5-2.2 ->
    # 1.0-1.2 s, step ~10 % less, the default sweep's shapes) with the same step time and the same
    # bits (losses and initial weights compared; BENCHMARKS.md, "compile options").
    "init": {"xla_backend_optimization_level": 2},
    "eval_step": {"xla_backend_optimization_level": 2},
    # The train step also without YNNPACK fusions (dots with their neighbouring elementwise work as
    # one YNNPACK graph): its dots go to XLA's own emitters: the d256-L4 step 6 % faster, d512 11 %,
    # the default sweep's d44-d80 steps 5-8 %, for ~0.3 s more compilation. Evaluation runs a few
    # times per run: its compile time matters more than its speed, it keeps them.
    "train_step": {"xla_backend_optimization_level": 2, "xla_cpu_experimental_ynn_fusion_type": ""},
    # A bfloat16 train step: its dots (lm.dots: bf16 operands, float32 result) run YNNPACK's native
    # bf16 kernel only as YNNPACK dots; single dots, without their elementwise neighbours, measured
    # fastest of the three forms (single, fused, XLA's emitter: BENCHMARKS.md, issue 27).
    "train_step_lowp": {"xla_backend_optimization_level": 2,
                        "xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT"},
}
"""Per-compilation options of the CPU training programs, by program (see the module docstring)."""

OPT_OUT = "LM_NO_PINNED_XLA_FLAGS"
"""Environment variable: set to 1 to leave XLA_FLAGS exactly as the user gave it."""


def flag_name(flag: str) -> str:
    """'--xla_cpu_enable_fast_math=true' -> '--xla_cpu_enable_fast_math'."""
    return flag.split("=", 1)[0]


def merged(user_flags: str, pinned: tuple[str, ...] | None = None) -> str:
    """`user_flags` (an XLA_FLAGS value) plus each pinned flag (default PINNED_CPU_FLAGS) the user
    did not set (by name)."""
    pinned = PINNED_CPU_FLAGS if pinned is None else pinned
    given = {flag_name(f) for f in user_flags.split()}
    extra = [f for f in pinned if flag_name(f) not in given]
    return " ".join([*user_flags.split(), *extra])


def apply(environ: MutableMapping[str, str] | None = None) -> str:
    """Merge the pinned flags into `environ['XLA_FLAGS']` (default os.environ) unless opted out;
    returns the value. Call before JAX starts its backend: later changes are not read."""
    environ = os.environ if environ is None else environ
    value = environ.get("XLA_FLAGS", "")
    if environ.get(OPT_OUT, "") not in ("", "0"):
        return value
    value = merged(value)
    if value or "XLA_FLAGS" in environ:
        environ["XLA_FLAGS"] = value
    return value


def compile_options(platform: str, program: str, environ: Mapping[str, str] | None = None) -> dict[str, object] | None:
    """The `compiler_options` of training program `program` ('init', 'train_step', 'eval_step')
    compiled for `platform` ('cpu', 'gpu', 'tpu'): CPU_COMPILE_OPTIONS[program] on CPU minus those
    whose flag the user set in XLA_FLAGS; None elsewhere or when opted out (LM_NO_PINNED_XLA_FLAGS=1)."""
    environ = os.environ if environ is None else environ
    if platform != "cpu" or environ.get(OPT_OUT, "") not in ("", "0"):
        return None
    given = {flag_name(f).lstrip("-") for f in environ.get("XLA_FLAGS", "").split()}
    options = {k: v for k, v in CPU_COMPILE_OPTIONS[program].items() if k not in given}
    return options or None
