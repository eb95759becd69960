"""Progress bars for `lm-sweep run`: one for the sweep (compute-weighted, with ETA), one per run in flight."""

from __future__ import annotations

import sys
import time
from typing import Any

from experiments import runner


class Bars(runner.Observer):
    """tqdm bars on stderr: the sweep's FLOPs done (with ETA) and, per worker, its run's steps."""

    def __init__(self, run_bars: bool = True):
        self.run_bars = run_bars
        self.show_train_progress = not run_bars      # inline: lm.train draws the run's bar itself
        self.bars: dict[str, Any] = {}
        self.main = None
        self.last_refresh = 0.0
        self.failed = 0

    def start(self, plan, done: set[str], slots: int) -> None:
        from tqdm import tqdm
        self.weights = {r.run_id: r.flops_per_token * r.new_steps * (r.tokens // r.steps) for r in plan.runs}
        self.steps = {r.run_id: (r.branch_step or 0, r.steps) for r in plan.runs}
        self.done = set(done)
        self.total_runs = len(plan.runs)
        self.free_positions = list(range(1, slots + 1))
        self.main = tqdm(total=sum(self.weights.values()), initial=self._done_weight(), desc="sweep",
                         unit="FLOP", unit_scale=True, file=sys.stderr, dynamic_ncols=True, position=0,
                         bar_format="{desc} {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} FLOP "
                                    "[{elapsed}<{remaining}]{postfix}")
        self._postfix()

    def _done_weight(self) -> float:
        return sum(self.weights[r] for r in self.done if r in self.weights)

    def _postfix(self) -> None:
        self.main.set_postfix_str(f"runs {len(self.done)}/{self.total_runs}" +
                                  (f", failed {self.failed}" if self.failed else ""), refresh=False)

    def started(self, spec, run_dir: str) -> None:
        if not self.run_bars or not self.free_positions:
            return
        from tqdm import tqdm
        first, last = self.steps[spec.run_id]
        slot = self.free_positions.pop(0)
        bar = tqdm(total=last - first, desc=spec.run_id, unit="step", file=sys.stderr, dynamic_ncols=True,
                   position=slot, leave=False)
        bar.run_dir, bar.first, bar.slot = run_dir, first, slot
        self.bars[spec.run_id] = bar

    def ended(self, run_id: str, finished: bool, failed: bool = False) -> None:
        if finished:
            self.done.add(run_id)
        self.failed += failed
        bar = self.bars.pop(run_id, None)
        if bar is not None:
            self.free_positions = sorted(self.free_positions + [bar.slot])
            bar.close()
        self.refresh(force=True)

    def refresh(self, force: bool = False) -> None:
        if self.main is None or (not force and time.time() - self.last_refresh < 1.0):
            return
        self.last_refresh = time.time()
        partial = 0.0
        for run_id, bar in self.bars.items():
            step = runner.last_step(bar.run_dir)
            if step is not None:
                bar.n = max(0, min(step - bar.first, bar.total))
                bar.refresh()
                partial += self.weights[run_id] * bar.n / max(bar.total, 1)
        self.main.n = self._done_weight() + partial
        self._postfix()
        self.main.refresh()

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()
        if self.main is not None:
            self.main.close()
