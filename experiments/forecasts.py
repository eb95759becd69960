"""Preregistered forecasts: what a stage was predicted to give, written before it trains.

`<sweep_dir>/forecasts.jsonl` is append-only: each row one complete JSON line, written with a
single write and fsync'd, never rewritten (a torn last line from a crash is ignored by readers and
truncated before the next append). Two kinds of row, linked by `id` (= "C<budget>"):

- prediction (before the stage's runs train): budget, predicted optimal loss with its interval
  (lo, hi at `level`), predicted N_opt with its interval, the stage's runs, the approach the forecast
  came from, the budgets it was fitted on, the time;
- observation (after the stage, its edge sizes included): the observed parabola minimum (loss, N),
  the relative error (predicted - observed) / observed and whether the interval covered it.

A resumed sweep keeps every earlier row and never predicts a budget twice.

`predict_optimum(table, budget, ...)` is the forecast itself:
- where the data know their exact entropy floor (the synthetic language: `entropy_floor` on the
  held-out tokens every run is scored on), the excess-loss law L_opt(C) = floor + K C^-gamma through
  the earlier budgets' observed minima, from 2 of them on (a line through log(L_opt - floor));
- otherwise, from 3 earlier budgets on, the frontier law L_opt(C) = E + K C^-gamma with E fitted;
- both in experiments.frontier_forecast, their interval from the runs' noise, widened by the law's
  own walk-forward errors;
- before that (or when neither fits) Approach 3 (the grid fit of L(N, D) on every run of the
  earlier stages, bootstrap intervals widened by the training residuals), or a power law through
  the earlier minima while there are too few runs for Approach 3 (its interval: from that power law
  to the last minimum, the range of every law E + K C^-gamma through the same minima, each end
  widened by the runs' noise).
`observed_optimum` is a budget's windowed parabola minimum. The minimum to be observed scatters as a
mean of the seeds its stage trains (`target_seeds`).

Why this rule: each rule refitted as of every stage on the tables of finished synthetic sweeps (no
training; BENCHMARKS.md, "the excess-loss law preregisters"): over 7 sweeps and seed subsets (28
forecasts, stages 3-6) the excess-loss law's mean |error| was below the former rule's on every one
(0.44-1.64 % against 0.73-2.96 %; on the one sweep held out while choosing, 0.44 against 1.20 %),
27 of 28 inside their 90 % intervals. Approach 3 under-predicted every stage-3 forecast (its E is
unidentified from 2 budgets and lands far below the floor), and the free-E frontier over-predicted
every stage 5 (the first budgets' minima bend more than the later ones: their fitted E lies above
the floor). Earlier, on three sweeps, the free-E frontier law had beaten Approach 3 at stages 4-6
(1.3 against 2.5 %) and at every text stage it could forecast; on text (no known floor) it stays.

Intervals contain their point: the bootstrap's spread (log space, about the resamples' median) is
moved onto the point estimate (`centred_interval`); a percentile interval of the resamples alone
can exclude the point fit's own estimate when the grid fit's resamples are biased or some fail.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any, Callable

import numpy as np

from lm.io import append_json_line, read_jsonl, truncate_torn_tail

FILE = "forecasts.jsonl"
LEVEL = 0.9
COMMON_NOISE = 1.0
"""The sd of the shift all runs of one budget share, relative to the sd of a run's own scatter about
its budget's parabola. Every run of a sweep draws its batches from one data stream (and its init from
one seed), so a budget's runs are lucky or unlucky together; the parabola's residuals see only the
scatter. Measured over 3 seeds of the default sweep's first two budgets (5 runs each): shared shift
rms 0.023 nats, own scatter sd 0.022-0.023 (BENCHMARKS.md, "the frontier law preregisters")."""
MIN_FRONTIER_BUDGETS = 3
"""Earlier budgets with a minimum inside their sizes the frontier law needs (3 parameters)."""
EXCESS_LAW = "excess law (E = floor)"
"""The approach name of the frontier law whose E is the data's exact entropy floor."""
WINDOW = 5
"""Sizes nearest the best run that a budget's observed parabola is fitted on (lm.scaling.isoflop)."""


@dataclasses.dataclass(frozen=True)
class Prediction:
    """A forecast of one budget's compute-optimal point."""

    budget: float
    loss: float
    lo: float
    hi: float
    n_opt: float
    n_lo: float
    n_hi: float
    approach: str
    fitted_budgets: tuple[float, ...] = ()


def path(folder: str) -> str:
    return os.path.join(folder, FILE)


def row_id(budget: float) -> str:
    return f"C{budget:.6g}"


def append(folder: str, row: dict[str, Any]) -> None:
    """Append one row: one write of one line, then fsync (the only way this file changes)."""
    truncate_torn_tail(path(folder))
    append_json_line(path(folder), row)


def read(folder: str) -> list[dict[str, Any]]:
    """Every row in file order (a torn last line ignored)."""
    bad = lambda row: None if isinstance(row, dict) and row.get("kind") in ("prediction", "observation") \
        and "id" in row else "is not a forecast row (kind prediction/observation with an id)"
    return read_jsonl(path(folder), bad, lambda line: f"move line {line} of {path(folder)} aside by hand")


def preregister(folder: str, stage: int, prediction: Prediction, runs: list[str], *,
                clock: Callable[[], float] = time.time) -> dict[str, Any] | None:
    """Write the prediction row of a stage unless its budget was predicted before (a resumed sweep)."""
    rid = row_id(prediction.budget)
    if any(r["kind"] == "prediction" and r["id"] == rid for r in read(folder)):
        return None
    row = {"kind": "prediction", "id": rid, "stage": stage, "level": LEVEL, "runs": sorted(runs),
           **dataclasses.asdict(prediction), "fitted_budgets": list(prediction.fitted_budgets), "at": clock()}
    append(folder, row)
    return row


def observe(folder: str, budget: float, observed_loss: float, observed_n: float, *,
            clock: Callable[[], float] = time.time) -> dict[str, Any] | None:
    """Write the observation row linked to the budget's prediction (once; None without a prediction)."""
    rows = read(folder)
    rid = row_id(budget)
    pred = next((r for r in rows if r["kind"] == "prediction" and r["id"] == rid), None)
    if pred is None or any(r["kind"] == "observation" and r["id"] == rid for r in rows):
        return None
    lo, hi = pred.get("lo"), pred.get("hi")
    covered = None if lo is None or hi is None else bool(lo <= observed_loss <= hi)
    row = {"kind": "observation", "id": rid, "budget": budget, "observed_loss": observed_loss,
           "observed_N": observed_n, "error": (pred["loss"] - observed_loss) / observed_loss,
           "covered": covered, "predicted_at": pred["at"], "at": clock()}
    append(folder, row)
    return row


def track_record(folder: str) -> list[dict[str, Any]]:
    """One dict per predicted budget: the prediction joined with its observation (if any)."""
    rows = read(folder)
    observed = {r["id"]: r for r in rows if r["kind"] == "observation"}
    out = []
    for r in rows:
        if r["kind"] == "prediction":
            o = observed.get(r["id"], {})
            out.append({**r, "observed_loss": o.get("observed_loss"), "observed_N": o.get("observed_N"),
                        "error": o.get("error"), "covered": o.get("covered")})
    return out


def format_track_record(record: list[dict[str, Any]]) -> list[str]:
    if not record:
        return []
    lines = ["Preregistered forecasts (forecasts.jsonl: each written before its stage trained; 90 % intervals):",
             f"  {'stage':>5} {'budget':>9} {'approach':<22} {'predicted [interval]':>28} {'N_opt pred':>10} "
             f"{'observed':>9} {'N_opt obs':>10} {'error':>8} {'covered':>8}"]
    num = lambda v, fmt: "nan" if v is None else format(v, fmt)
    for r in record:
        obs = f"{r['observed_loss']:9.4f}" if r["observed_loss"] is not None else f"{'-':>9}"
        n_obs = f"{r['observed_N']:10.3g}" if r["observed_N"] is not None else f"{'-':>10}"
        err = f"{100 * r['error']:+7.2f}%" if r["error"] is not None else f"{'-':>8}"
        cov = {True: "yes", False: "NO", None: "-"}[r["covered"]]
        lines.append(f"  {r['stage']:>5} {r['budget']:9.3g} {r['approach']:<22} {r['loss']:8.4f} "
                     f"[{num(r['lo'], '.4f')}, {num(r['hi'], '.4f')}] {r['n_opt']:10.3g} {obs} {n_obs} {err} {cov:>8}")
    done = [r for r in record if r["error"] is not None]
    if done:
        errs = np.abs([r["error"] for r in done])
        cov = [r["covered"] for r in done if r["covered"] is not None]
        lines.append(f"  track record: {len(done)} stage(s) observed, mean |error| {100 * errs.mean():.2f} %, "
                     f"worst {100 * errs.max():.2f} %; intervals covered {sum(cov)} of {len(cov)}")
    return lines


# ---------------------------------------------------------------------------------------------
# The forecast and the observation.

def observed_optimum(table, budget: float, flops_per_token=None) -> tuple[float, float, bool]:
    """(loss, N, inside) of a budget's windowed parabola minimum; its best run when no parabola fits
    (inside False then, as when the vertex lies outside the sizes)."""
    from lm.scaling.isoflop import fit_budget

    g = table[table["budget"] == budget]
    row = fit_budget(budget, g, WINDOW, 3, False, flops_per_token)[0] if len(g) >= 3 else None
    if row is not None and np.isfinite(row["loss_opt"]):
        return float(row["loss_opt"]), float(row["N_opt"]), bool(row["inside"])
    best = g.loc[g["loss"].idxmin()]
    return float(best["loss"]), float(best["N"]), False


def predict_optimum(table, budget: float, flops_per_token=None, *, n_bootstrap: int = 200,
                    seed: int = 0, target_seeds: int | None = None, floor: float | None = None) -> Prediction:
    """Budget C's forecast from the earlier stages' runs (`table`): the frontier law through the
    earlier budgets' minima once there are >= 3 of them (`frontier_prediction`; with the data's
    exact entropy `floor` as its E, the excess-loss law, from 2 on), Approach 3 before that, or when
    the law cannot be fitted or has no interval (no parabola residual to measure the runs' noise by:
    every stage of exactly 3 sizes) (`approach3_prediction`). target_seeds: the seeds each size of
    budget C will average (its minimum's own noise in the interval scales by 1/sqrt of it); None: as
    many as the table's last budget."""
    if len(set(table["budget"])) >= (MIN_FRONTIER_BUDGETS if floor is None else 2):
        try:
            p = frontier_prediction(table, budget, flops_per_token, n_bootstrap=n_bootstrap, seed=seed,
                                    target_seeds=target_seeds, floor=floor)
        except (ValueError, np.linalg.LinAlgError):
            p = None
        if p is not None and all(np.isfinite(v) and v > 0 for v in (p.loss, p.lo, p.hi, p.n_opt)):
            return p
    return approach3_prediction(table, budget, flops_per_token, n_bootstrap=n_bootstrap, seed=seed,
                                target_seeds=target_seeds)


def frontier_prediction(table, budget: float, flops_per_token=None, *, n_bootstrap: int = 200,
                        seed: int = 0, target_seeds: int | None = None, floor: float | None = None) -> Prediction:
    """Budget C's optimal loss from L_opt = E + K C^-gamma through the earlier budgets' observed
    minima (those whose parabola vertex lies inside their sizes; ValueError with fewer than 3, or 2
    when E is the known entropy `floor`) and N_opt from a log-log line through their N
    (experiments.frontier_forecast: the fit and its interval, the runs' noise bootstrap widened by
    the law's walk-forward errors)."""
    from experiments.frontier_forecast import frontier_forecast

    optima = {c: observed_optimum(table, c, flops_per_token) for c in sorted(set(table["budget"]))}
    budgets = [c for c, (_, _, inside) in optima.items() if inside]      # a best run at an edge is no minimum
    points = np.array([optima[c][:2] for c in budgets]).reshape(-1, 2)                      # [B, 2]: loss, N
    draws = minima_noise_draws(table[table["budget"].isin(budgets)], budgets, flops_per_token, n_bootstrap, seed)
    scale = np.sqrt(_budget_seeds(table, budgets[-1]) / target_seeds) if target_seeds and budgets else 1.0
    f = frontier_forecast(budgets, points, draws, budget, level=LEVEL, seed=seed, noise_scale=float(scale),
                          floor=floor)
    return Prediction(budget, f["loss"], f["lo"], f["hi"], f["n_opt"], f["n_lo"], f["n_hi"],
                      "frontier law" if floor is None else EXCESS_LAW, tuple(float(c) for c in budgets))


def approach3_prediction(table, budget: float, flops_per_token=None, *, n_bootstrap: int = 200,
                         seed: int = 0, target_seeds: int | None = None) -> Prediction:
    """Budget C's optimal loss and N_opt from Approach 3 fitted on `table` (the earlier stages' runs),
    with `LEVEL` intervals: the bootstrap laws' predictions times a draw of the training residuals
    (log space, shrunk by the 5 runs a parabola minimum averages) and a shift the budget's runs share
    (normal, COMMON_NOISE x the residuals' sd). A residual of a row averaging k seeds is rescaled to
    a mean of target_seeds (x sqrt(k / target_seeds); None: as it is)."""
    import warnings

    from lm.scaling import approach3
    from lm.scaling.laws import ChinchillaLaw

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            a3 = approach3(table, flops_per_token=flops_per_token, n_bootstrap=n_bootstrap, seed=seed,
                           budgets=(), level=LEVEL)     # allocations below: a degenerate resample is skipped
    except ValueError:                       # too few runs for L(N, D): follow the observed minima
        return minima_power_law(table, budget, flops_per_token, n_bootstrap=n_bootstrap, seed=seed)
    law = a3.law
    best = _optimum(law, budget, flops_per_token)
    if best is None:                         # the law has no compute-optimal size at this budget
        return minima_power_law(table, budget, flops_per_token, n_bootstrap=n_bootstrap, seed=seed)
    n_opt, loss = best
    lo = hi = n_lo = n_hi = float("nan")
    samples = a3.bootstrap.samples if a3.bootstrap is not None else []
    optima = np.array([o for o in (_optimum(ChinchillaLaw(*s), budget, flops_per_token) for s in samples)
                       if o is not None]).reshape(-1, 2)                 # [R', 2]: (N_opt, loss)
    if len(optima) >= 2:
        resid = np.log(law.loss(table["N"].to_numpy(float), table["D"].to_numpy(float))) - np.log(table["loss"].to_numpy(float))
        if target_seeds:
            resid = resid * np.sqrt(_seeds(table) / target_seeds)
        rng = np.random.default_rng(seed)
        shift = COMMON_NOISE * np.std(resid) * rng.standard_normal(len(optima))     # the budget's shared shift
        preds = optima[:, 1] * np.exp(-rng.choice(resid, size=len(optima)) / np.sqrt(WINDOW) + shift)
        (lo, hi), (n_lo, n_hi) = centred_interval(loss, preds), centred_interval(n_opt, optima[:, 0])
    return Prediction(budget, loss, float(lo), float(hi), n_opt, float(n_lo), float(n_hi), "Approach 3",
                      tuple(sorted(float(c) for c in set(table["budget"]))))


def centred_interval(point: float, samples) -> tuple[float, float]:
    """The `LEVEL` interval of positive `samples` [R] moved onto `point`: point x exp(quantiles of
    log(samples) - median log(samples)). It always contains the point: a percentile interval of the
    resamples alone is centred on their median, which a grid fit's bootstrap (or its failed resamples,
    skipped) can move off the point fit's estimate."""
    logs = np.log(np.asarray(samples, float))
    logs = logs[np.isfinite(logs)]
    if len(logs) < 2:
        return float("nan"), float("nan")
    lo, hi = np.quantile(logs - np.median(logs), [(1 - LEVEL) / 2, (1 + LEVEL) / 2])
    return float(point * np.exp(lo)), float(point * np.exp(hi))


def contain(point: float, lo: float, hi: float) -> tuple[float, float]:
    """(lo, hi) moved in log space so that it contains `point`, its log width kept (nan stays nan)."""
    if not (np.isfinite(lo) and np.isfinite(hi)) or lo <= point <= hi:
        return lo, hi
    shift = point / np.sqrt(lo * hi)          # centre on the point
    return float(lo * shift), float(hi * shift)


def _optimum(law, budget: float, flops_per_token) -> tuple[float, float] | None:
    """(N_opt, optimal loss) of one bootstrap law at the budget; None when it has no interior optimum."""
    import warnings

    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            n = float(law.optimal(budget, flops_per_token)[0])
            loss = float(law.optimal_loss(budget, flops_per_token))
    except (ValueError, FloatingPointError, ZeroDivisionError):
        return None
    return (n, loss) if np.isfinite(n) and np.isfinite(loss) else None


def minima_power_law(table, budget: float, flops_per_token=None, *, n_bootstrap: int = 200,
                     seed: int = 0) -> Prediction:
    """The fallback forecast: straight lines in log-log through the earlier budgets' observed minima
    (N_opt(C) and L_opt(C)), with an interval that brackets the family L_opt = E + K C^-gamma through
    the same minima: its forecast rises with E from the power law itself (E = 0) to the last minimum
    (E = that minimum: no more gain), so lo = the power law's and hi = the last minimum's `LEVEL` bounds
    under a parametric bootstrap of the runs' noise (`minima_noise_draws`); N_opt's interval is the
    power law's under that bootstrap. Without a residual to measure the noise by (every parabola
    through exactly 3 sizes) the bounds are the bare power law and last minimum, and N's is nan.
    Why a bracket: from 2 budgets nothing identifies E, and the noise alone (a 90 % interval of the
    power law) covered none of 10 stages of three real sweeps (BENCHMARKS.md, issue 23, "mainjob")."""
    budgets = sorted(set(table["budget"]))
    if len(budgets) < 2:
        raise ValueError(f"a forecast of budget {budget:.3g} needs runs of >= 2 earlier budgets; got {len(budgets)}")
    points = np.array([observed_optimum(table, c, flops_per_token)[:2] for c in budgets])  # [B, 2]: loss, N
    loss, n_opt = extrapolate_minima(budgets, points, budget)
    draws = minima_noise_draws(table, budgets, flops_per_token, n_bootstrap, seed)     # [R, B, 2]
    preds = np.array([extrapolate_minima(budgets, d, budget) for d in draws]).reshape(-1, 2)
    last = float(points[-1, 0])
    if len(preds) >= 2:
        lo, hi = centred_interval(loss, preds[:, 0])[0], centred_interval(last, draws[:, -1, 0])[1]
        n_lo, n_hi = centred_interval(n_opt, preds[:, 1])
    else:
        lo, hi, n_lo, n_hi = loss, last, float("nan"), float("nan")
    lo, hi = min(lo, loss), max(hi, last, loss)
    return Prediction(budget, loss, lo, hi, n_opt, n_lo, n_hi, "minima power law",
                      tuple(float(c) for c in budgets))


def extrapolate_minima(budgets, points, budget: float) -> tuple[float, float]:
    """(L_opt, N_opt) at `budget` from lines in log-log through points [B, 2] (loss, N) at `budgets`."""
    x = np.log(budgets)
    with np.errstate(all="ignore"):
        l_fit, n_fit = np.polyfit(x, np.log(points[:, 0]), 1), np.polyfit(x, np.log(points[:, 1]), 1)
    return float(np.exp(np.polyval(l_fit, np.log(budget)))), float(np.exp(np.polyval(n_fit, np.log(budget))))


def _seeds(table) -> np.ndarray:
    """[rows] seeds averaged into each row of a fit table (experiments.report.average_seeds; 1 without)."""
    return table["seeds"].to_numpy(float) if "seeds" in table else np.ones(len(table))


def _budget_seeds(table, budget: float) -> float:
    """Seeds every row of one budget averages (the fewest; 1 for a budget with no rows)."""
    k = _seeds(table[table["budget"] == budget])
    return float(k.min()) if len(k) else 1.0


def minima_noise_draws(table, budgets, flops_per_token, n_bootstrap: int, seed: int) -> np.ndarray:
    """[R, B, 2] (loss, N) minima of the budgets re-observed with every run's loss moved by a normal draw
    of the pooled residual scale of the budgets' parabolas (sigma; each run's own draw, seeded) plus a
    shift shared by the runs of one budget (normal, COMMON_NOISE x sigma; it moves the minimum's loss
    alone, so the parabolas' residuals cannot see it). sigma is one run's scale: a row that averages
    k seeds (fit table column `seeds`) counts k-fold in the pooled residual, and its draws, and its
    budget's shift (the seeds vary the data stream and init), are sigma / sqrt(k); [0, B, 2] when sigma is 0 or unknown (every
    parabola through exactly 3 sizes)."""
    from lm.scaling.isoflop import fit_budget

    resid, dof = 0.0, 0
    for c in budgets:
        g = table[table["budget"] == c]
        row, _, used = fit_budget(c, g, WINDOW, 3, False, flops_per_token) if len(g) >= 3 else (None, "", None)
        if row is not None and used.sum() > 3:
            u = np.log(g["N"].to_numpy())[used] - row["x0"]
            fit = row["p0"] + row["p1"] * u + row["p2"] * u ** 2
            weight = _seeds(g)[used]            # a mean of k seeds scatters 1/sqrt(k) as far as one run
            resid += float(np.sum(weight * (g["loss"].to_numpy()[used] - fit) ** 2))
            dof += int(used.sum()) - 3
    sigma = np.sqrt(resid / dof) if dof else 0.0
    if not sigma > 0:
        return np.zeros((0, len(budgets), 2))
    rng = np.random.default_rng(seed)
    run_sd = sigma / np.sqrt(_seeds(table))
    budget_sd = np.array([COMMON_NOISE * sigma / np.sqrt(_budget_seeds(table, c)) for c in budgets])
    out = np.full((n_bootstrap, len(budgets), 2), np.nan)
    for r in range(n_bootstrap):
        noisy = table.assign(loss=table["loss"].to_numpy(float) + run_sd * rng.standard_normal(len(table)))
        out[r] = [observed_optimum(noisy, c, flops_per_token)[:2] for c in budgets]
        out[r, :, 0] += budget_sd * rng.standard_normal(len(budgets))
    return out[np.all(np.isfinite(out) & (out > 0), axis=(1, 2))]
