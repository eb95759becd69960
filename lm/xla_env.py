"""The XLA flags this project pins, in one place, and how they reach XLA.

XLA reads `XLA_FLAGS` once, when JAX starts a backend (the first array or compile, not `import
jax`), so the command-line entry points (`lm-train`, the sweep's worker processes, the benchmarks)
call `apply()` before any JAX work. A flag the user already put in XLA_FLAGS is never overridden:
the user's value wins, and `LM_NO_PINNED_XLA_FLAGS=1` turns the pinning off altogether (to measure
without it). Library code (`lm.train.train`, tests, notebooks) does not touch the environment.

PINNED_CPU_FLAGS holds the flags that measured faster on the CPU training step, each measured on
its own against the step without it (`python -m experiments.bench_flags`; figures, machine and
date in BENCHMARKS.md, "XLA CPU flags"). A flag that did not move the step beyond the noise of a
same-process comparison is not pinned: a flag costs compile-cache keys and portability across
jaxlib versions (XLA aborts at start-up on a flag it does not know).
"""

from __future__ import annotations

import os
from typing import MutableMapping

PINNED_CPU_FLAGS: tuple[str, ...] = ()
"""`--name=value` flags added to XLA_FLAGS on every backend (XLA ignores CPU flags elsewhere)."""

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
