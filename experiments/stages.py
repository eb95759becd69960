"""Run an adaptive sweep stage by stage (experiments.adaptive plans, experiments.runner trains).

Each pass replays the stages on the finished rows (adaptive.walk), then:
- writes the observation row of every completed stage that was forecast (forecasts.observe);
- before the stage in progress trains, writes its forecast (forecasts.preregister, from stage
  `adaptive.preregister_from` on; a resumed sweep keeps the rows it wrote before);
- runs every unfinished run planned so far (the `train` callable: runner.run_plan, all workers on the stage's runs).
It stops when every stage is complete, or when a run failed or was blocked (the outcome says which).
"""

from __future__ import annotations

import math
from typing import Any

from experiments import adaptive
from experiments import forecasts
from experiments import results as results_lib
from experiments.configs import SweepConfig


class StageFits:
    """The fit tables and forecasts a walk asks for, each computed once per invocation."""

    def __init__(self, cfg: SweepConfig):
        self.cfg = cfg
        self.rows: dict[str, dict[str, Any]] = {}
        self.predictions: dict[tuple, Any] = {}

    def table(self, run_ids):
        import pandas as pd

        from experiments.report import fit_table
        frame = pd.DataFrame([self.rows[r] for r in run_ids if r in self.rows])
        return fit_table(frame, self.cfg.convention)

    def predict(self, table, budget: float, fpt):
        key = (budget, tuple(sorted(table["run"])))
        if key not in self.predictions:
            self.predictions[key] = forecasts.predict_optimum(
                table, budget, fpt, n_bootstrap=self.cfg.adaptive.forecast_bootstrap, seed=self.cfg.train.seed,
                target_seeds=adaptive.budget_seeds(self.cfg, budget), floor=self.floor(table["run"]))
        return self.predictions[key]

    def floor(self, run_ids) -> float | None:
        """The data's exact entropy floor on the held-out tokens every run is scored on (synthetic
        data), None when a run has none (text): the forecasts then fit E."""
        floors = [self.rows[r].get("entropy_floor") for r in run_ids]
        if not floors or any(f is None or not math.isfinite(f) for f in floors):
            return None
        return float(sum(floors) / len(floors))

    def walk(self, rows: dict[str, dict[str, Any]]) -> adaptive.Walk:
        self.rows = rows
        return adaptive.walk(self.cfg, rows, self.predict, self.table)


def observe_completed(cfg: SweepConfig, walk: adaptive.Walk, fits: StageFits) -> None:
    """The observation row of each completed, forecast stage (once)."""
    for stage in walk.stages:
        if stage.complete and stage.prediction is not None and stage.index >= cfg.adaptive.preregister_from:
            table, fpt = fits.table([r.run_id for r in stage.runs])
            loss, n_opt, _ = forecasts.observed_optimum(table, stage.budget, fpt)
            forecasts.observe(cfg.directory, stage.budget, loss, n_opt)


def run_stages(cfg: SweepConfig, train, log) -> list:
    """Every stage of an adaptive sweep, in order (the caller holds the folder's lock).

    train(plan) trains a plan's unfinished runs and returns what it did (runner.run_plan's
    SweepOutcome); the outcomes of every pass are returned in order."""
    outcomes = []
    fits = StageFits(cfg)
    while True:
        rows = {r["run_id"]: r for r in results_lib.read_rows(cfg.directory)}
        walk = fits.walk(rows)
        observe_completed(cfg, walk, fits)
        results_lib.record_sweep(cfg, walk.plan(cfg))                # plan.json: the runs planned so far
        if walk.done:
            break
        stage = walk.stages[-1]
        if stage.prediction is not None and stage.index >= cfg.adaptive.preregister_from:
            forecasts.preregister(cfg.directory, stage.index, stage.prediction, [r.run_id for r in stage.runs])
        if log is not None and stage.edge_note:
            log(f"stage {stage.index} (C={stage.budget:.3g}): {stage.edge_note}")
        outcome = train(walk.plan(cfg))
        outcomes.append(outcome)
        if outcome.failed or outcome.blocked or not outcome.recorded:
            break                          # a run failed, or nothing moved (no pass may repeat itself)
    return outcomes
