"""Forecasts on held-back budgets: does a law predict a budget it has not seen?

For k = 1, 2: fit each approach on the runs below the largest k budgets, then predict
- each held-back budget's optimal loss (observed: the budget's windowed parabola minimum,
  isoflop.fit_budget, or its best run when no parabola fits inside the sizes sampled), and
- every held-back run's loss (parametric laws only).
Approach 3 (grid or VPNLS) predicts both from L(N, D): L(N_opt(C), D_opt(C)) and L(N, D); its
interval is the bootstrap's law samples plus the training residuals (resampled, in log space;
scaled by 1/sqrt(points in the parabola) for an optimum, which averages them). Approach 2
predicts optimal losses only, from an offset power law L*(C) = E + K C^-gamma through the
training budgets' parabola minima (needs >= 4 of them). Its interval: Approach 2's own bootstrap
(each training budget's points resampled and re-windowed, isoflop.py) gives every resample's
parabola minima; the offset law refitted to each (bootstrap.refit_offset_power_laws) predicts
the held-back budget, times the noise of one observed minimum (a draw from the minima's
bootstrap deviations, log space).
The error table gives per approach and k: mean and worst relative error and the fraction of
observations inside the interval (coverage, nominal `level` = 90 %).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from lm.scaling.approaches import approach3
from lm.scaling.bootstrap import refit_offset_power_laws
from lm.scaling.fit import fit_offset_power_law
from lm.scaling.isoflop import DEFAULT_WINDOW, boot_budget, fit_budget
from lm.scaling.laws import ChinchillaLaw
from lm.scaling.results import budgets_of, prepare_results


@dataclass(frozen=True)
class Forecast:
    predictions: pd.DataFrame
    """One row per prediction: approach, k, budget, kind ("optimum" | "run"), N, D, observed,
    predicted, lo, hi, rel_error, covered (nan without an interval)."""
    notes: tuple[str, ...]

    def errors(self) -> pd.DataFrame:
        """Per approach, k and kind: n, mean and worst |relative error|, coverage."""
        p = self.predictions
        if p.empty:
            return pd.DataFrame(columns=["approach", "k", "kind", "n", "mean_rel_error", "worst_rel_error", "coverage"])
        g = p.assign(abs_rel=p["rel_error"].abs()).groupby(["approach", "k", "kind"], sort=False)
        return g.agg(n=("abs_rel", "size"), mean_rel_error=("abs_rel", "mean"), worst_rel_error=("abs_rel", "max"),
                     coverage=("covered", "mean")).reset_index()

    def summary(self) -> str:
        lines = ["Forecasts on held-back budgets (fit below the largest k budgets; |relative error|, "
                 "coverage of the 90 % interval):",
                 f"  {'approach':<20} {'k':>2} {'kind':<8} {'n':>4} {'mean err':>9} {'worst':>8} {'coverage':>9}"]
        for r in self.errors().itertuples():
            cov = "n/a" if not np.isfinite(r.coverage) else f"{100 * r.coverage:.0f} %"
            lines.append(f"  {r.approach:<20} {r.k:>2} {r.kind:<8} {r.n:>4} {100 * r.mean_rel_error:8.2f}% "
                         f"{100 * r.worst_rel_error:7.2f}% {cov:>9}")
        return "\n".join(lines + [f"  note: {n}" for n in self.notes])


def observed_optimum(budget, g, window, flops_per_token):
    """A budget's observed optimal loss and the points behind it: its windowed parabola minimum
    when the vertex lies inside the sizes used, else its best run (n_used = 1)."""
    row, _, _ = fit_budget(budget, g, window, 3, False, flops_per_token)
    if row is not None and row["inside"]:
        return row["loss_opt"], row["n_used"]
    return float(g["loss"].min()), 1


def _law_rows(name, k, a3, train, test, obs, level, rng):
    """Approach 3's predictions for the held-back runs and optima, with intervals."""
    law, boot = a3.law, a3.bootstrap
    resid = np.log(law.loss(train["N"], train["D"])) - np.log(train["loss"])
    laws = [ChinchillaLaw(*s) for s in boot.samples] if boot is not None else []
    q = [(1 - level) / 2, (1 + level) / 2]
    rows = []

    def interval(fn, shrink):
        if len(laws) < 2:
            return np.nan, np.nan
        preds = np.array([fn(i) for i in range(len(laws))])
        noise = rng.choice(resid, size=len(preds)) / np.sqrt(shrink)
        return tuple(np.quantile(preds * np.exp(-noise), q))

    for r in test.itertuples():
        lo, hi = interval(lambda i: laws[i].loss(r.N, r.D), 1)
        rows.append(dict(approach=name, k=k, budget=r.budget, kind="run", N=r.N, D=r.D, observed=r.loss,
                         predicted=float(law.loss(r.N, r.D)), lo=lo, hi=hi))
    for c, (l_obs, n_used) in obs.items():
        lo, hi = interval(lambda i: float(laws[i].optimal_loss(c)), n_used)
        n_opt, d_opt = law.optimal(c)
        rows.append(dict(approach=name, k=k, budget=c, kind="optimum", N=n_opt, D=d_opt, observed=l_obs,
                         predicted=float(law.optimal_loss(c)), lo=lo, hi=hi))
    return rows


def forecast(results: pd.DataFrame, *, ks=(1, 2), flops_per_token=None, n_bootstrap: int = 200, seed: int = 0,
             level: float = 0.9, window=DEFAULT_WINDOW, methods=("grid", "vpnls"), budget_tol_dex: float = 0.05,
             constraints=None, memo: dict | None = None) -> Forecast:
    """Fit on budgets below the largest k, predict the held-back ones (module doc).
    memo: fit.fit_chinchilla's, shared with the caller's other fits (approaches.extrapolation)."""
    df = prepare_results(results, flops_per_token).assign(budget=lambda d: budgets_of(d, budget_tol_dex))
    budgets = np.sort(df["budget"].unique())
    rng = np.random.default_rng(seed)
    rows, notes = [], []
    for k in ks:
        if len(budgets) - k < 2:
            notes.append(f"k={k}: {len(budgets)} budgets leave fewer than 2 to fit on")
            continue
        held = budgets[-k:]
        train, test = df[df["budget"] < held[0]], df[df["budget"] >= held[0]]
        obs = {c: observed_optimum(c, test[test["budget"] == c], window, flops_per_token) for c in held}
        for method in methods:
            name = "Approach 3 (VPNLS)" if method == "vpnls" else "Approach 3"
            try:
                a3 = approach3(train, method=method, n_bootstrap=n_bootstrap, seed=seed, budgets=tuple(held),
                               flops_per_token=flops_per_token, constraints=constraints, memo=memo)
            except Exception as err:  # noqa: BLE001 - one approach failing never hides the others
                why = str(err) if isinstance(err, ValueError) else f"{type(err).__name__}: {err}"
                notes.append(f"k={k}: {name} could not be fitted: {why}")
                continue
            rows += _law_rows(name, k, a3, train, test, obs, level, rng)
        try:
            rows += _approach2_rows(k, train, obs, window, flops_per_token, notes, n_bootstrap, level, rng)
        except Exception as err:  # noqa: BLE001 - one approach failing never hides the others
            notes.append(f"k={k}: Approach 2 could not forecast: {type(err).__name__}: {err}")
    pred = pd.DataFrame(rows)
    if len(pred):
        pred["rel_error"] = (pred["predicted"] - pred["observed"]) / pred["observed"]
        inside = (pred["observed"] >= pred["lo"]) & (pred["observed"] <= pred["hi"])
        pred["covered"] = np.where(pred["lo"].notna(), inside.astype(float), np.nan)
    return Forecast(predictions=pred, notes=tuple(notes))


def _approach2_rows(k, train, obs, window, flops_per_token, notes, n_bootstrap, level, rng):
    """Approach 2's predicted optimal losses for the held-back budgets, with bootstrap intervals."""
    minima, boots = [], []
    for c, g in train.groupby("budget"):
        row, _, _ = fit_budget(c, g, window, 3, False, flops_per_token)
        if row is not None and row["inside"]:
            minima.append((c, row["loss_opt"]))
            if n_bootstrap >= 2:
                _, ls, _, rejected = boot_budget(row, g, window, 3, False, n_bootstrap, rng)
                boots.append(np.where(rejected, np.nan, ls))
    if len(minima) < 4:
        notes.append(f"k={k}: Approach 2 forecasts need >= 4 training budgets with a parabola minimum "
                     f"inside the sizes sampled; got {len(minima)}")
        return []
    C, L = np.array(minima).T
    fit = fit_offset_power_law(C, L)
    law, draws = fit.law, None
    if boots:
        boot_loss = np.stack(boots, axis=1)  # [R, budgets]
        laws = [b for b in refit_offset_power_laws(C, boot_loss, fit) if b is not None]
        dev = (np.log(boot_loss) - np.log(L))[np.isfinite(boot_loss)]  # one minimum's noise, log space
        if len(laws) >= 2:
            draws = (laws, dev)
    q = [(1 - level) / 2, (1 + level) / 2]
    rows = []
    for c, (l_obs, _) in obs.items():
        lo = hi = np.nan
        if draws is not None:
            preds = np.array([b.loss(c) for b in draws[0]])
            lo, hi = np.quantile(preds * np.exp(rng.choice(draws[1], size=len(preds))), q)
        rows.append(dict(approach="Approach 2", k=k, budget=c, kind="optimum", N=np.nan, D=np.nan, observed=l_obs,
                         predicted=float(law.loss(c)), lo=lo, hi=hi))
    return rows
