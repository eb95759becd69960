"""An aimed forecast: hold budgets back (--holdout-above C, --holdout K), name budgets beyond the
data (--predict C1,C2), and write every forecast as one table (forecast.csv).

    data = walkforward.split_data(table)               # runs or minima, with observed optima
    train, held = holdout(data, above=3e20)            # or k=2
    choice = walkforward.choose(train, shape=data.shape)
    rows = forecast_rows(choice, held, predict=[1e22])
    rows.to_csv("forecast.csv", index=False)           # COLUMNS

Rows: every identified candidate's forecast of each held-out budget's optimal loss (kind
"optimum"; observed: the budget's parabola minimum or the minima table's row) and, for laws of
(N, D) on a per-run table, each held-out run's loss (kind "run"), and of each --predict budget
(observed empty). `chosen` marks the rows of the candidate the walk-forward chose.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from lm.scaling.walkforward import Choice, Data

COLUMNS = ["approach", "chosen", "kind", "budget", "N", "D", "predicted", "lo", "hi", "observed"]


def holdout(data: Data, *, above: float | None = None, k: int | None = None):
    """(training table, held-out Data) for a cut at C = `above` or at the K-th largest budget.

    The training table is what walkforward.choose and fit_approaches read (runs: N, D, C, loss,
    budget[, run]; minima: budget, loss, N, D); ValueError when the cut leaves < 3 budgets to fit
    or none to score."""
    budgets = np.sort(data.observed["budget"].to_numpy(float))
    if k is not None:
        if not (isinstance(k, (int, np.integer)) and 1 <= k < len(budgets)):
            raise ValueError(f"--holdout {k}: use 1 to {len(budgets) - 1} (the table has {len(budgets)} budgets)")
        above = float(budgets[-k])
    if above is None or not (np.isfinite(above) and above > 0):
        raise ValueError(f"--holdout-above {above}: give a positive FLOP budget, e.g. 1e21")
    n_fit = int(np.sum(budgets < above))
    if n_fit < 3 or n_fit == len(budgets):
        raise ValueError(f"--holdout-above {above:.3g} leaves {n_fit} budgets to fit and {len(budgets) - n_fit} to "
                         f"score; the table's budgets run {budgets[0]:.3g}..{budgets[-1]:.3g}: pick a cut with >= 3 "
                         "below it and >= 1 at or above it")
    held_obs = data.observed[data.observed["budget"] >= above]
    if data.runs is None:
        return (data.minima[data.minima["budget"] < above].reset_index(drop=True),
                Data(data.shape, None, data.minima.iloc[:0], held_obs))
    runs = data.runs
    return (runs[runs["budget"] < above].reset_index(drop=True),
            Data(data.shape, runs[runs["budget"] >= above], data.minima.iloc[:0], held_obs))


def forecast_rows(choice: Choice, held: Data | None = None, predict=(), level: float | None = None) -> pd.DataFrame:
    """Every identified candidate's forecasts of the held-out data and the --predict budgets (COLUMNS)."""
    level = level or choice.level
    rows = []
    for name, model in choice.models.items():
        if not model.identified:
            continue
        tag = dict(approach=name, chosen=name == choice.chosen)
        if held is not None and len(held.observed):
            obs = held.observed
            loss, lo, hi, n, d = model.optimum(obs["budget"].to_numpy(), obs["n_used"].to_numpy(), level)
            rows += [dict(tag, kind="optimum", budget=c, N=n[i], D=d[i], predicted=loss[i], lo=lo[i], hi=hi[i],
                          observed=o) for i, (c, o) in enumerate(zip(obs["budget"], obs["loss"]))]
        if held is not None and held.runs is not None and len(held.runs):
            out = model.runs(held.runs["N"], held.runs["D"], level)
            if out is not None:
                r = held.runs
                rows += [dict(tag, kind="run", budget=b, N=n, D=d, predicted=out[0][i], lo=out[1][i], hi=out[2][i],
                              observed=o) for i, (b, n, d, o) in enumerate(zip(r["budget"], r["N"], r["D"], r["loss"]))]
        if len(predict):
            f = choice.forecast(predict, level, name=name)
            rows += [dict(tag, kind="optimum", budget=r.budget, N=r.N, D=r.D, predicted=r.loss, lo=r.lo, hi=r.hi,
                          observed=np.nan) for r in f.itertuples()]
    return pd.DataFrame(rows, columns=COLUMNS)


def forecast_lines(rows: pd.DataFrame) -> list[str]:
    """Summary on stdout: per approach and kind, mean and worst |relative error| and coverage of
    the held-out rows; the predicted budgets of the chosen approach."""
    if rows.empty:
        return ["Forecast: no identified approach could forecast"]
    lines = []
    scored = rows[rows["observed"].notna()]
    if len(scored):
        lines += ["Forecast of the held-out budgets (|relative error|; coverage of the interval):",
                  f"  {'approach':<34} {'kind':<8} {'n':>4} {'mean err':>9} {'worst':>8} {'coverage':>9}"]
        e = scored.assign(err=(scored["predicted"] / scored["observed"] - 1).abs(),
                          cov=((scored["observed"] >= scored["lo"]) & (scored["observed"] <= scored["hi"])).astype(float))
        for (name, kind), g in e.groupby(["approach", "kind"], sort=False):
            mark = " <- chosen" if g["chosen"].iloc[0] else ""
            lines.append(f"  {name:<34} {kind:<8} {len(g):>4} {100 * g['err'].mean():8.2f}% {100 * g['err'].max():7.2f}% "
                         f"{100 * g['cov'].mean():8.0f}%{mark}")
    pred = rows[rows["observed"].isna() & rows["chosen"]]
    if len(pred):
        lines.append(f"Forecast beyond the data ({pred['approach'].iloc[0]}):")
        lines += [f"  C = {r.budget:.3g}: loss {r.predicted:.4f} [{r.lo:.4f}, {r.hi:.4f}]"
                  + (f", N_opt {r.N:.3g}, D_opt {r.D:.3g}" if np.isfinite(r.N) else "") for r in pred.itertuples()]
    return lines
