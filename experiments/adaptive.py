"""The adaptive IsoFLOP design: budgets in ascending stages, each centred on the forecast so far.

Stage k (1-based) trains budget C_k (the sweep's budgets sorted). Its sizes are `sizes.per_budget`
rungs of the sweep's shared size ladder (experiments.plan.ladder), nearest to log-spaced targets over
N*/s .. N* x s:
- N* is the prior sqrt(C / (6 tokens_per_param_guess)) for the first `adaptive.prior_stages` stages,
  and from then on the forecast of N_opt(C_k) fitted on every run of the stages before
  (experiments.forecasts.predict_optimum);
- s is `adaptive.spread`, widened to the forecast's 90 % interval for N_opt (half its width in
  log N, as a factor) when that is wider, up to `adaptive.max_spread`.
When a stage's runs have finished and its parabola minimum lies outside its sizes, or its best run is
its smallest or largest size, the stage adds the `adaptive.edge_sizes` feasible rungs next beyond
that edge (adjacent ones first, so the parabola gets points near its minimum) and looks again, up to `adaptive.max_edge_rounds` times, before the next
stage starts.

Everything here is a pure function of the config and the finished rows of the results table, so a
killed sweep, resumed, plans exactly what it would have planned had it never stopped.
`walk(cfg, rows)` replays the stages: the runs planned so far, the stage in progress and its
forecast (None for a prior stage).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable

from experiments.configs import SweepConfig
from experiments.plan import Dropped, Plan, RunSpec, cosine_point, feasible, ladder, seed_replicas

Predict = Callable[[Any, float, Any], Any]
"""predict(fit table of earlier runs, budget, flops_per_token) -> forecasts.Prediction."""


@dataclasses.dataclass(frozen=True)
class Stage:
    """One stage as planned from the rows finished so far."""

    index: int
    """1-based."""
    budget: float
    centre: float
    """N* the sizes are centred on (fit units: non-embedding params under '6n', total otherwise)."""
    spread: float
    runs: tuple[RunSpec, ...]
    """Base sizes then edge sizes, in the order they were added."""
    prediction: Any = None
    """forecasts.Prediction the centre came from (None: the prior)."""
    complete: bool = False
    """Every run finished and no edge sizes left to add."""
    edge_note: str = ""


@dataclasses.dataclass(frozen=True)
class Walk:
    stages: tuple[Stage, ...]
    """Every stage reached: all complete but possibly the last."""
    done: bool
    """Every budget's stage is complete."""

    @property
    def runs(self) -> tuple[RunSpec, ...]:
        return tuple(r for s in self.stages for r in s.runs)

    def plan(self, cfg: SweepConfig) -> Plan:
        return Plan(cfg, self.runs, ())


def fit_units(cfg: SweepConfig, spec: RunSpec) -> float:
    """N of a run in the units the fits use (experiments.report.fit_table)."""
    return float(spec.params_nonembed if cfg.convention == "6n" else spec.params)


def rungs(cfg: SweepConfig, budget: float) -> list[tuple[float, RunSpec]]:
    """(N in fit units, the run) of every feasible ladder rung at this budget, smallest first."""
    out = []
    for _, shape in ladder(cfg):
        if feasible(cfg, shape, budget):
            spec, reason = cosine_point(cfg, shape, budget, smallest=False)
            if reason is None:
                out.append((fit_units(cfg, spec), spec))
    return sorted(out, key=lambda item: item[0])


def prior_centre(cfg: SweepConfig, budget: float) -> float:
    return math.sqrt(budget / (6.0 * cfg.sizes.tokens_per_param_guess))


def base_runs(cfg: SweepConfig, budget: float, centre: float, spread: float) -> tuple[RunSpec, ...]:
    """per_budget distinct feasible rungs nearest to log-spaced targets over centre/spread .. centre*spread."""
    options = rungs(cfg, budget)
    if not options:
        raise ValueError(f"budget C={budget:.3g} has no feasible size on the ladder of sizes.range="
                         f"{cfg.sizes.range}; raise the budget or lower batch_size/seq_len/min_steps")
    k = min(cfg.sizes.per_budget, len(options))
    lo, hi = math.log(centre / spread), math.log(centre * spread)
    chosen: list[int] = []
    for i in range(k):
        target = lo + (hi - lo) * i / max(k - 1, 1)
        left = [j for j in range(len(options)) if j not in chosen]
        chosen.append(min(left, key=lambda j: abs(math.log(options[j][0]) - target)))
    return tuple(options[j][1] for j in sorted(chosen))


def edge_runs(cfg: SweepConfig, budget: float, runs: tuple[RunSpec, ...], losses: dict[str, float],
              table_fn) -> tuple[tuple[RunSpec, ...], str]:
    """(rungs to add beyond an edge, why) when the stage's minimum is outside or at the edge of its sizes;
    ((), '') when it is inside; ((), why not) when the ladder has no feasible rung left on that side."""
    from experiments.forecasts import observed_optimum

    sizes = sorted((fit_units(cfg, r), r.run_id) for r in runs if losses.get(r.run_id) is not None)
    if len(sizes) < 3:
        return (), ""
    best = min(sizes, key=lambda s: losses[s[1]])
    _, n_opt, inside = observed_optimum(table_fn(), budget)
    low = best == sizes[0] or (not inside and n_opt < sizes[0][0])
    high = best == sizes[-1] or (not inside and n_opt > sizes[-1][0])
    if not (low or high):
        return (), ""
    options = rungs(cfg, budget)
    have = {r.run_id for r in runs}
    index = {spec.run_id: j for j, (_, spec) in enumerate(options)}
    taken = sorted(index[r.run_id] for r in runs if r.run_id in index)
    if not taken:
        return (), ""
    beyond = range(taken[0] - 1, -1, -1) if low else range(taken[-1] + 1, len(options))
    # The next rungs beyond the edge, adjacent ones first: the parabola gets points near its minimum.
    new = [options[j][1] for j in beyond if options[j][1].run_id not in have][:cfg.adaptive.edge_sizes]
    where = "smallest" if low else "largest"
    if not new:
        return (), f"its minimum lies at its {where} size and the ladder has no feasible size beyond it"
    return tuple(new), f"minimum at or beyond its {where} size: added {', '.join(r.shape.name for r in new)}"


def stage_seeds(cfg: SweepConfig, k: int) -> int:
    """Seeds each size of stage k (1-based) trains: adaptive.seeds_first_stages in the prior stages,
    then adaptive.seeds_later_stages stage by stage (its last entry for any further stage; 1 when empty)."""
    ad = cfg.adaptive
    if k <= ad.prior_stages:
        return ad.seeds_first_stages
    later = ad.seeds_later_stages
    return later[min(k - ad.prior_stages, len(later)) - 1] if later else 1


def budget_seeds(cfg: SweepConfig, budget: float) -> int:
    """Seeds each size of the stage that trains `budget` trains (stage_seeds)."""
    return stage_seeds(cfg, sorted(cfg.budgets).index(budget) + 1)


def replicate(runs: tuple[RunSpec, ...], seeds: int) -> tuple[RunSpec, ...]:
    """Each run followed by its seed replicas (experiments.plan.seed_replicas)."""
    return tuple(r for spec in runs for r in seed_replicas(spec, seeds))


def mean_losses(base: tuple[RunSpec, ...], seeds: int, rows: dict[str, dict[str, Any]]) -> dict[str, float | None]:
    """run_id of each base run -> the mean loss of its finished seed replicas (None: none has a loss)."""
    out: dict[str, float | None] = {}
    for spec in base:
        losses = [rows[r.run_id].get("loss") for r in seed_replicas(spec, seeds) if r.run_id in rows]
        losses = [x for x in losses if x is not None]
        out[spec.run_id] = sum(losses) / len(losses) if losses else None
    return out


def walk(cfg: SweepConfig, rows: dict[str, dict[str, Any]], predict: Predict, table_fn) -> Walk:
    """Replay the stages on the finished rows (run_id -> row); stop at the first incomplete stage.

    table_fn(run_ids) -> the fit table (experiments.report.fit_table) of those finished runs, and
    the flops-per-token function; predict(table, budget, fpt) -> forecasts.Prediction."""
    ad = cfg.adaptive
    stages: list[Stage] = []
    earlier: list[str] = []
    for k, budget in enumerate(sorted(cfg.budgets), start=1):
        prediction = None
        if k <= ad.prior_stages:
            centre, spread = prior_centre(cfg, budget), ad.spread
        else:
            table, fpt = table_fn(earlier)
            prediction = predict(table, budget, fpt)
            centre, spread = prediction.n_opt, ad.spread
            if math.isfinite(prediction.n_lo) and math.isfinite(prediction.n_hi) and prediction.n_lo > 0:
                spread = min(ad.max_spread, max(ad.spread, math.sqrt(prediction.n_hi / prediction.n_lo)))
        seeds = stage_seeds(cfg, k)
        base = base_runs(cfg, budget, centre, spread)
        runs = replicate(base, seeds)
        note, complete = "", False
        for _ in range(ad.max_edge_rounds + 1):
            if not all(r.run_id in rows for r in runs):
                break
            ids = [r.run_id for r in runs]
            more, why = edge_runs(cfg, budget, base, mean_losses(base, seeds, rows), lambda: table_fn(ids)[0])
            note = why or note
            if not more:
                complete = True
                break
            base, runs = base + more, runs + replicate(more, seeds)
        else:
            complete = all(r.run_id in rows for r in runs)
        stages.append(Stage(k, budget, centre, spread, runs, prediction, complete, note))
        if not complete:
            return Walk(tuple(stages), False)
        earlier += [r.run_id for r in runs]
    return Walk(tuple(stages), True)


def first_stage_plan(cfg: SweepConfig) -> Plan:
    """The runs known before anything trains: every prior stage's base sizes."""
    runs: list[RunSpec] = []
    for k, budget in enumerate(sorted(cfg.budgets)[:cfg.adaptive.prior_stages], start=1):
        runs += replicate(base_runs(cfg, budget, prior_centre(cfg, budget), cfg.adaptive.spread), stage_seeds(cfg, k))
    return Plan(cfg, tuple(runs), tuple[Dropped, ...]())


def describe_later_stages(cfg: SweepConfig) -> list[str]:
    """`lm-sweep plan`'s lines for the stages whose sizes depend on results."""
    ad = cfg.adaptive
    lines = []
    for k, budget in enumerate(sorted(cfg.budgets), start=1):
        if k > ad.prior_stages:
            lines.append(f"  stage {k}: C={budget:.3g}: {cfg.sizes.per_budget} sizes centred on the forecast of "
                         f"N_opt(C) from stages 1-{k - 1} (spread x{ad.spread:g}, up to x{ad.max_spread:g} when its "
                         f"interval is wide)" + ("; forecast preregistered in forecasts.jsonl"
                                                 if k >= ad.preregister_from else ""))
    if ad.seeds_first_stages > 1:
        lines.append(f"  stages 1-{ad.prior_stages} train every size with {ad.seeds_first_stages} seeds (run ids "
                     f"'<id>-s<k>': train.seed and data.seed + k); the fits average their losses")
    later = [(k, stage_seeds(cfg, k)) for k in range(ad.prior_stages + 1, len(cfg.budgets) + 1)]
    if any(seeds > 1 for _, seeds in later):
        lines.append("  later stages train every size with " + ", ".join(f"{seeds} (stage {k})" for k, seeds in later)
                     + " seeds, averaged the same way")
    lines.append(f"  every stage adds {ad.edge_sizes} size(s) beyond an edge when its parabola minimum lies outside "
                 f"or at the edge of its sizes (up to {ad.max_edge_rounds} times)")
    return lines

