"""Which pending run a free worker starts next.

Longest first (LPT: the last runs to finish are short ones, so the workers end together), where a
run's length counts the compilation it will pay: the first run of a shape compiles its train, init
and eval programs (seconds on a CPU, the same order as a short run's training), every later run of
it loads them from the sweep's compilation cache. And no shape is compiled twice at once: while the
first run of a shape is still compiling-or-training on one worker, another worker takes a run of a
different shape if there is one, for as long as the first compilation is expected to take (it
would otherwise compile the same programs side by side; afterwards it loads them from the cache).

Costs are in seconds once runs have finished in this invocation (seconds per training FLOP and
compile seconds from their results); before that, in FLOPs alone (plain LPT).
"""

from __future__ import annotations

import statistics
import time
from typing import Any, Hashable, Iterable

from experiments.plan import RunSpec

DEFAULT_COMPILE_S = 10.0
"""Compile-and-set-up seconds of a shape's first run until one has been measured."""


def run_flops(spec: RunSpec) -> float:
    """Training FLOPs the run does itself (a WSD cooldown: from its branch step on)."""
    return spec.flops_per_token * spec.tokens * spec.new_steps / max(spec.steps, 1)


def shape_key(spec: RunSpec) -> Hashable:
    """What the compiled programs of a run depend on within a sweep: its shape and parametrisation
    (the learning rate is fed from the host, the run's length is not part of the programs)."""
    return spec.shape.name, spec.parametrization


class Scheduler:
    """Picks the next run; told which runs started and how the finished ones went."""

    def __init__(self, compiled: Iterable[RunSpec] = ()):
        self.seen: set[Hashable] = {shape_key(s) for s in compiled}   # compiled before (cache) or started
        self.first_run: dict[Hashable, tuple[str, float]] = {}         # key -> (run_id, start) of its first run here
        self.s_per_flop: list[float] = []
        self.compile_s: list[float] = []

    def started(self, spec: RunSpec, now: float | None = None) -> None:
        key = shape_key(spec)
        if key not in self.seen:
            self.seen.add(key)
            self.first_run[key] = (spec.run_id, time.monotonic() if now is None else now)

    def ended(self, spec: RunSpec, result: dict[str, Any]) -> None:
        """Learn from a finished run's result.json: training seconds per FLOP, and (first run of its
        shape) the seconds it spent outside training."""
        flops = run_flops(spec)
        train_s, wall_s = result.get("train_s"), result.get("wall_s")
        if train_s and flops > 0:
            self.s_per_flop.append(float(train_s) / flops)
        first = self.first_run.get(shape_key(spec))
        if wall_s and train_s is not None and first is not None and first[0] == spec.run_id:
            self.compile_s.append(max(0.0, float(wall_s) - float(train_s)))

    def expected_compile_s(self) -> float:
        return statistics.median(self.compile_s) if self.compile_s else DEFAULT_COMPILE_S

    def cost(self, spec: RunSpec) -> float:
        """Expected seconds (FLOPs until a run has finished) of the run on a worker."""
        flops = run_flops(spec)
        if not self.s_per_flop:
            return flops
        compile_s = 0.0 if shape_key(spec) in self.seen else self.expected_compile_s()
        return flops * statistics.median(self.s_per_flop) + compile_s

    def pick(self, candidates: list[RunSpec], running: Iterable[str], now: float | None = None) -> RunSpec | None:
        """The costliest candidate, leaving out runs of a shape whose first run is still within its
        expected compilation, unless every candidate is such a run."""
        if not candidates:
            return None
        running, now = set(running), time.monotonic() if now is None else now
        compiling = {key for key, (run_id, t0) in self.first_run.items()
                     if run_id in running and now - t0 < self.expected_compile_s()}
        free = [s for s in candidates if shape_key(s) not in compiling] or candidates
        return max(free, key=self.cost)
