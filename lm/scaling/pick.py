"""The walk-forward's choice rule: which candidate forecasts beyond the data (walkforward.choose).

    name, why = pick_candidate(score_table, predictions, eligible_candidates)

Input: the walk-forward's predictions (one row per forecast: candidate, origin, kind "optimum" or
"run", budget, N, D, observed, predicted, rel_error, z). Pure and deterministic. Three steps:

1. The frontier family's champion (least squares = the naive baseline, or Huber): the naive
   baseline stays unless the other beats it by more than ONE_SE standard errors of the paired
   |error| differences on their shared optimum forecasts (one shared forecast: never).
2. Approach 3's champion (grid and VPNLS x 4 Huber deltas: one law, eight objectives): the lowest
   mean |relative error| over ALL its walk-forward forecasts on the splits every variant fitted,
   later optima and later runs pooled. Runs are what Approach 3 is fitted to, and a 5-budget
   table gives each variant ~20 run forecasts against 3 optima, so the pool is steadier.
3. Between the families. Approach 3 uses every run; the frontier law only the per-budget minima,
   and needs 4 budgets to fit, so on a table of 5-7 budgets it forecasts 1-3 later optima and a
   comparison on those alone is decided by one or two parabola minima. So Approach 3 is preferred
   when its own forecasts of later runs pass two checks that its law holds beyond the data
   (`a3_checks`: no excess spread, no systematic bias), unless the frontier beats it by more than
   ONE_SE standard errors on >= 2 shared optimum forecasts. When Approach 3 fails a check (the
   law bends away from the data beyond its range, as on most public tables) or made no run
   forecast, the family with the lower mean |error| of the optimum forecasts on the splits both
   champions fitted is chosen.

Measured (BENCHMARKS.md, "Choosing between the families"): on synthetic 7-budget per-run tables
with 2 held out the choice is within 1.5x of the best candidate on 16 of 20 seeds (14 with step 3
as a plain comparison of optimum errors); on the 42 public tables 10 wins / 8 losses / 24 ties vs
the naive baseline (9 / 10 / 23 before).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from lm.scaling.candidates import NAIVE

ONE_SE = 1.0
"""A challenger replaces the default (the naive baseline within the frontier family; Approach 3's
champion across families, when it passes its checks) only when its mean |error| is lower by more
than ONE_SE standard errors of the paired differences (the one-standard-error rule)."""
CHECK_LEVEL = 0.95
"""Approach 3's checks (a3_checks) fail at a 1 - CHECK_LEVEL significance level."""


def _common(rows: pd.DataFrame, names: list[str]):
    """(rows of `names` on the origins every one of them forecast, how many such origins);
    each on its own origins (0) when none is shared."""
    sub = rows[rows["candidate"].isin(names)]
    common = set.intersection(*(set(sub.loc[sub["candidate"] == c, "origin"]) for c in names))
    return (sub[sub["origin"].isin(common)], len(common)) if common else (sub, 0)


def _mean_error(rows: pd.DataFrame, names: list[str]) -> pd.Series:
    return rows.assign(e=rows["rel_error"].abs()).groupby("candidate")["e"].mean().reindex(names).dropna()


def _beats(rows: pd.DataFrame, name: str, default: str) -> tuple[bool, str]:
    """Does `name` beat `default` on their shared optimum forecasts (rows) by more than ONE_SE
    standard errors of the paired |error| differences? (one shared forecast: no standard error, never)."""
    key = ["origin", "budget"]
    e = lambda c: rows[rows["candidate"] == c].set_index(key)["rel_error"].abs()
    d = (e(default) - e(name)).dropna()
    se = d.std(ddof=1) / np.sqrt(len(d)) if len(d) > 1 else np.inf
    return bool(d.mean() > ONE_SE * se), (f"{name} beat {default} by {100 * d.mean():.2f} points on {len(d)} "
                                           f"shared forecasts, within {ONE_SE:g} standard error "
                                           f"({'n/a' if not np.isfinite(se) else f'{100 * se:.2f}'}); ")


def a3_checks(runs: pd.DataFrame) -> tuple[bool, str]:
    """(passed, why) for one Approach 3 candidate's walk-forward run forecasts (rows with origin,
    budget, observed, predicted, z: the standardized error under the fit's own linearised spread).
    1. spread: sum z^2 below the chi-square quantile at CHECK_LEVEL with one dof per forecast
       (its later runs land within the spread its fit says);
    2. bias: a two-sided sign test over the (split, budget) groups' mean log error, p >= 1 -
       CHECK_LEVEL (a law that bends away from the data misses every later budget on the same
       side; with <= 5 groups the test can never fail).
    No run forecast: not passed (no evidence)."""
    z = runs["z"].to_numpy(float) if len(runs) else np.zeros(0)
    z = z[np.isfinite(z)]
    if not len(z):
        return False, "it forecast no later run"
    chi = float(np.sum(z * z))
    limit = float(stats.chi2.ppf(CHECK_LEVEL, len(z)))
    g = np.log(runs["observed"] / runs["predicted"]).groupby([runs["origin"], runs["budget"]]).mean()
    k, n = int((g > 0).sum()), int((g != 0).sum())
    p = stats.binomtest(k, n).pvalue if n else 1.0
    if chi > limit:
        return False, f"its {len(z)} later runs miss by more than its spread (sum z^2 {chi:.1f} > {limit:.1f})"
    if p < 1 - CHECK_LEVEL:
        return False, f"its later runs miss on one side ({k} of {n} split-budget groups above, sign test p={p:.2g})"
    return True, f"its {len(z)} later runs land within its spread, without bias (sign test p={p:.2g})"


def _frontier_champion(opt: pd.DataFrame, names: list[str]) -> tuple[str | None, str]:
    if not names:
        return None, ""
    sub, _ = _common(opt, names)
    means = _mean_error(sub, names)
    if means.empty:
        return None, ""
    best = str(means.idxmin())
    if NAIVE.name in means.index and best != NAIVE.name:
        beats, why = _beats(sub, best, NAIVE.name)
        if not beats:
            return NAIVE.name, why
    return best, ""


def a3_champion(pred: pd.DataFrame, names: list[str]) -> str | None:
    """Approach 3's champion among `names` (module doc, step 2): the lowest mean |relative error| over
    its later optima and runs on the splits all of them fitted; None where none forecast a split."""
    sub, _ = _common(pred, names)
    means = _mean_error(sub, names)
    return str(means.idxmin()) if len(means) else None


def _between(pred: pd.DataFrame, a3: str, fr: str) -> tuple[str, str]:
    """(chosen, why) between Approach 3's champion and the frontier's (module doc, step 3)."""
    opt = pred[pred["kind"] == "optimum"]
    passed, why = a3_checks(pred[(pred["candidate"] == a3) & (pred["kind"] == "run")])
    sub, n_common = _common(opt, [a3, fr])
    if passed:
        beats, _ = _beats(sub, fr, a3)
        if beats:
            return fr, f"{fr} beat {a3} by more than {ONE_SE:g} standard error on their shared optimum forecasts " \
                       f"({a3} passed its checks: {why})"
        return a3, f"{a3} uses every run and passed its checks ({why}); {fr} did not beat it by more than " \
                   f"{ONE_SE:g} standard error on their shared optimum forecasts"
    means = _mean_error(sub, [a3, fr])
    best = str(means.idxmin())
    where = f"on the {n_common} splits both fitted" if n_common else "each on its own splits"
    return best, f"{a3} failed a check ({why}); lowest mean |relative error| of the optimal-loss " \
                 f"forecasts {where}: {100 * means[best]:.2f}%"


def pick_candidate(table: pd.DataFrame, pred: pd.DataFrame, eligible: list):
    """(chosen name or None, reason) among the eligible Candidates (module doc)."""
    if not eligible:
        return None, "no candidate is identified on the whole table and forecasts a split"
    opt = pred[pred["kind"] == "optimum"]
    fr, notes = _frontier_champion(opt, [c.name for c in eligible if c.kind == "frontier"])
    a3_names = [c.name for c in eligible if c.kind == "a3"]
    a3 = a3_champion(pred, a3_names) if a3_names else None
    if a3 is None and fr is None:
        return None, "no identified candidate forecast an observed optimum"
    naive = table.loc[table["baseline"], "mean_error"]
    vs = (f"; naive baseline {100 * naive.iloc[0]:.2f}%" if len(naive) and np.isfinite(naive.iloc[0]) else "")
    if a3 is None or fr is None:
        best = a3 or fr
        return best, notes + f"the only family that forecast: {best}{vs}"
    best, why = _between(pred, a3, fr)
    return best, notes + why + vs
