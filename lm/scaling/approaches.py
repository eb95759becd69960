"""Chinchilla's three approaches (Hoffmann et al. 2022, sec. 3) from one results table.

`fit_approaches(results, curves)` runs all three and returns `Approaches` (tables, summary):
- Approach 1 (envelope.py): the lower envelope of loss over FLOPs across all runs' curves ->
  the (N, D) on the envelope -> power laws N_opt(C) = G_N C^a, D_opt(C) = G_D C^b.
- Approach 2 (isoflop.py): per IsoFLOP budget a parabola of loss in ln N -> its minimum ->
  power laws across budgets; minima outside the sizes sampled warn.
- Approach 3 (here, on fit.py): the parametric fit, a = beta/(alpha+beta), b = alpha/(alpha+beta).
`extrapolation(results)` fits Approach 3 without the largest budget and checks its prediction.

Intervals: Approach 1 resamples runs; Approach 2 resamples points within each budget;
Approach 3 resamples points (bootstrap.py). Each result holds `estimates` with the same keys
(a, b, and N_opt@C / D_opt@C per budget) so they print as one table. The results table's
columns are described in results.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from lm.scaling.bootstrap import ChinchillaBootstrap, Estimate, bootstrap_chinchilla
from lm.scaling.constraints import FitConstraints
from lm.scaling.envelope import CHINCHILLA_TABLE3_BUDGETS, Approach1, approach1
from lm.scaling.fit import DELTA, FitResult, fit_chinchilla
from lm.scaling.frontier import LS_DELTA, Frontier, frontier
from lm.scaling.identify import a3_reasons, frontier_reasons, power_law_reasons, unidentified, value_reasons
from lm.scaling.isoflop import (DEFAULT_WINDOW, Approach2, approach2, check_window, fit_parabola, fmt_ratio,
                                parabola_vertex)
from lm.scaling.laws import ChinchillaLaw, FlopsPerToken
from lm.scaling.optimize import LBFGSOptions
from lm.scaling.results import budgets_of, check_table, prepare_results, table_shape
from lm.scaling.vpnls import fit_vpnls


@dataclass(frozen=True)
class Approach3:
    """Parametric fit L = E + A/N^alpha + B/D^beta with bootstrap intervals."""

    fit: FitResult
    bootstrap: ChinchillaBootstrap | None
    estimates: dict[str, Estimate]
    """E, A, B, alpha, beta, a, b, G, and N_opt@C, D_opt@C, D/N@C per budget."""
    method: str = "grid"
    """"grid" (L-BFGS from Chinchilla's 4,500 starts) or "vpnls" (variable projection)."""
    constraints: FitConstraints = FitConstraints()

    @property
    def law(self) -> ChinchillaLaw:
        return self.fit.law

    def summary(self) -> str:
        e = self.estimates
        return (f"Approach 3: {self.fit.summary()}\n  "
                + "\n  ".join(f"{k} = {e[k]}" for k in ("E", "A", "B", "alpha", "beta", "a", "b")))


METHODS = ("grid", "vpnls")


def approach3(results: pd.DataFrame, *, flops_per_token: FlopsPerToken | None = None,
              n_bootstrap: int = 1000, seed: int = 0, budgets=CHINCHILLA_TABLE3_BUDGETS,
              level: float = 0.95, delta: float = DELTA, method: str = "grid",
              constraints: FitConstraints | None = None,
              opts: LBFGSOptions = LBFGSOptions(), memo: dict | None = None) -> Approach3:
    """Chinchilla Approach 3 on the runs' final (N, D, loss); bootstrap resamples runs.

    Allocations at `budgets` follow flops_per_token (closed form under 6N, numerical
    otherwise); the exponents a, b reported are the law's, beta/(alpha+beta) and
    alpha/(alpha+beta): exact under 6N; under another convention N_opt(C) is not a pure power
    law and the allocations, not a and b, carry the difference.
    n_bootstrap < 2 skips the bootstrap (estimates then carry nan intervals).
    method: "grid" (Chinchilla's 4,500 L-BFGS starts) or "vpnls" (variable projection, vpnls.py);
    constraints: fixed E, alpha = beta, Huber delta, loss space (constraints.py; its delta wins).
    memo: fit.fit_chinchilla's memo (the grid fit is reused where the same points were fitted).
    """
    if method not in METHODS:
        raise ValueError(f"method={method!r}: use one of {METHODS}")
    cons = constraints if constraints is not None else FitConstraints(delta=delta)
    df = prepare_results(results, flops_per_token)
    N, D, L = (df[c].to_numpy() for c in ("N", "D", "loss"))
    if method == "vpnls":
        fit = fit_vpnls(N, D, L, constraints=cons, opts=opts)
    else:
        fit = fit_chinchilla(N, D, L, delta=cons.delta, opts=opts, constraints=None if cons.default else cons,
                             memo=memo)
    bad = value_reasons(dict(E=fit.law.E, alpha=fit.law.alpha, beta=fit.law.beta), float(L.min()))
    if bad:  # before the bootstrap: a negative exponent makes G and the allocations complex
        raise ValueError(unidentified(bad))
    if n_bootstrap < 2:
        law = fit.law
        est = {k: Estimate(float(getattr(law, k)), np.nan, np.nan, np.nan, level)
               for k in ("E", "A", "B", "alpha", "beta", "a", "b", "G")}
        for c in budgets:
            n, d = law.optimal(c, flops_per_token)
            est[f"N_opt@{c:.3g}"] = Estimate(float(n), np.nan, np.nan, np.nan, level)
            est[f"D_opt@{c:.3g}"] = Estimate(float(d), np.nan, np.nan, np.nan, level)
        return Approach3(fit=fit, bootstrap=None, estimates=est, method=method, constraints=cons)
    boot = bootstrap_chinchilla(N, D, L, fit, n_resamples=n_bootstrap, seed=seed, budgets=budgets,
                                flops_per_token=flops_per_token, level=level, delta=cons.delta, opts=opts,
                                constraints=None if cons.default else cons)
    return Approach3(fit=fit, bootstrap=boot, estimates=boot.estimates, method=method, constraints=cons)


@dataclass(frozen=True)
class Approaches:
    """All three approaches on one results table; None where an approach could not run."""

    approach1: Approach1 | None
    approach2: Approach2 | None
    approach3: Approach3 | None
    budgets: tuple[float, ...]
    notes: tuple[str, ...]
    """Why an approach is missing, and other caveats."""
    approach3_vpnls: Approach3 | None = None
    """Approach 3 by variable projection, beside the grid fit (vpnls=True)."""
    failed: tuple[tuple[str, str], ...] = ()
    """(approach, reason) for each approach that was asked for and could not run, or ran and
    is not identified ("unidentified: <reason>", identify.py): such a fit is dropped (None)."""
    frontier: Frontier | None = None
    """The frontier law L_opt(C) = E + K C^-gamma on the per-budget minima (frontier.py)."""
    shape: str = "runs"
    """The table's shape: "runs" or "minima" (results.table_shape)."""
    data_budgets: tuple[float, ...] = ()
    """The budgets the table has; allocation rows outside their range are extrapolated."""

    def approach3_fits(self) -> dict[str, Approach3]:
        """{"Approach 3": ..., "Approach 3 (VPNLS)": ...} for the parametric fits that ran."""
        out = {}
        for a3 in (self.approach3, self.approach3_vpnls):
            if a3 is not None:
                out["Approach 3 (VPNLS)" if a3.method == "vpnls" else "Approach 3"] = a3
        return out

    def estimates(self) -> dict[str, dict[str, Estimate]]:
        """{"Approach 1": {...}, ...} for the approaches that ran."""
        out = {}
        if self.approach1 is not None:
            out["Approach 1"] = self.approach1.fits.estimates
        if self.approach2 is not None:
            out["Approach 2"] = self.approach2.fits.estimates
        for name, a3 in self.approach3_fits().items():
            out[name] = a3.estimates
        if self.frontier is not None and "a" in self.frontier.estimates:
            out[self.frontier.name] = self.frontier.estimates
        return out

    def exponents_table(self) -> pd.DataFrame:
        """a (N_opt ∝ C^a) and b (D_opt ∝ C^b) with intervals, one row per approach."""
        rows = []
        for name, est in self.estimates().items():
            a, b = est["a"], est.get("b", Estimate(np.nan, np.nan, np.nan, np.nan))
            rows.append(dict(approach=name, a=a.value, a_lo=a.lo, a_hi=a.hi, b=b.value, b_lo=b.lo, b_hi=b.hi))
        return pd.DataFrame(rows)

    def allocation_table(self) -> pd.DataFrame:
        """Compute-optimal N and D per approach and budget, with intervals (like Chinchilla Table 3)."""
        rows = []
        lo, hi = (min(self.data_budgets), max(self.data_budgets)) if self.data_budgets else (0.0, np.inf)
        nan = Estimate(np.nan, np.nan, np.nan, np.nan)
        for name, est in self.estimates().items():
            for c in self.budgets:
                n, d = est.get(f"N_opt@{c:.3g}", nan), est.get(f"D_opt@{c:.3g}", nan)
                rows.append(dict(approach=name, C=c, N_opt=n.value, N_lo=n.lo, N_hi=n.hi,
                                 D_opt=d.value, D_lo=d.lo, D_hi=d.hi, tokens_per_param=d.value / n.value,
                                 extrapolated=not (lo * (1 - 1e-9) <= c <= hi * (1 + 1e-9))))
        return pd.DataFrame(rows, columns=["approach", "C", "N_opt", "N_lo", "N_hi", "D_opt", "D_lo", "D_hi",
                                           "tokens_per_param", "extrapolated"])

    def summary(self) -> str:
        """Readable report: parameters, exponents and allocations with intervals."""
        lines = []
        for name, a3 in self.approach3_fits().items():
            fit = a3.fit
            lines.append(f"{name}: L(N, D) = E + A/N^alpha + B/D^beta; {a3.constraints.describe()}; "
                         f"objective {fit.objective:.6e} over {fit.n_points} runs, best of {fit.n_starts} starts")
            for k in ("E", "A", "B", "alpha", "beta", "G"):
                lines.append(f"  {k:>6} = {a3.estimates[k]}")
        lines = [f"Table shape: {self.shape} ({'one row per training run' if self.shape == 'runs' else 'one row per budget: its compute-optimal run'})"] + lines
        if self.approach2 is not None:
            lines.append(self.approach2.summary())
            lines += self.approach2.budget_lines()
        if self.frontier is not None:
            lines.append(self.frontier.summary())
        lines.append("Exponents (N_opt ∝ C^a, D_opt ∝ C^b), estimate ± SE [interval]:")
        for name, est in self.estimates().items():
            lines.append(f"  {name}: a = {est['a']}   b = {est['b']}")
        lines.append("Compute-optimal allocation:")
        table = self.allocation_table()
        if len(table):
            for (name,), g in table.groupby(["approach"], sort=False):
                lines.append(f"  {name}")
                lines.append(f"    {'FLOPs':>10} {'N_opt':>10} {'N interval':>23} {'D_opt':>10} "
                             f"{'D interval':>23} {'D/N':>8}")
                for r in g.itertuples():
                    lines.append(f"    {r.C:10.3g} {r.N_opt:10.3g} [{r.N_lo:10.3g}, {r.N_hi:10.3g}] "
                                 f"{r.D_opt:10.3g} [{r.D_lo:10.3g}, {r.D_hi:10.3g}] {fmt_ratio(r.tokens_per_param):>8}"
                                 f"{'  extrapolated' if r.extrapolated else ''}")
        lines += [f"Note: {n}" for n in self.notes]
        return "\n".join(lines)


APPROACH_NAMES = {1: "Approach 1", 2: "Approach 2", 3: "Approach 3", "vpnls": "Approach 3 (VPNLS)",
                  "frontier": "frontier law"}
MINIMA_SKIP = {1: "a minima table has no loss curves or IsoFLOP runs; its N_opt(C), D_opt(C) are the frontier law's",
               2: "a minima table has no IsoFLOP runs to fit parabolas to; its N_opt(C), D_opt(C) are the frontier law's",
               3: "a minima table's points lie along one curve, which cannot separate E, A/N^alpha and B/D^beta",
               "vpnls": "a minima table's points lie along one curve, which cannot separate E, A/N^alpha and B/D^beta"}


def identification(k, fit, df: pd.DataFrame, budget: np.ndarray) -> list[str]:
    """identify.py's reasons for approach k's fit on the prepared runs df (budget labels [n])."""
    if k in (1, 2):
        nb = len(fit.isoflops) if k == 2 else len(np.unique(budget))
        return power_law_reasons(fit.fits.estimates, nb)
    if k == "frontier":
        return frontier_reasons(fit)
    return a3_reasons(fit.law, df["N"], df["D"], df["loss"], budget, fit.estimates)


def fit_approaches(results: pd.DataFrame, curves: pd.DataFrame | None = None, *,
                   flops_per_token: FlopsPerToken | None = None, budgets=CHINCHILLA_TABLE3_BUDGETS,
                   n_bootstrap: int = 1000, seed: int = 0, level: float = 0.95,
                   approaches=(1, 2, 3, "frontier"), budget_tol_dex: float = 0.05, strict: bool = False,
                   final_points: bool = False, window: int | float | str | None = DEFAULT_WINDOW, method: str = "grid",
                   vpnls: bool = False, constraints: FitConstraints | None = None, table: str = "auto",
                   frontier_delta: float = LS_DELTA, opts: LBFGSOptions = LBFGSOptions()) -> Approaches:
    """Run Chinchilla's Approaches 1, 2 and 3 and the frontier law on one table (results.py).

    table: "runs", "minima" or "auto" (results.table_shape); on a minima table Approaches 1-3 are
    skipped with their reason and the frontier law fits the given minima.
    curves: optional long frame (run, tokens, loss) for Approach 1 (or a `curve` column in
    results); final_points=True lets Approach 1 use the frontier of final losses instead.
    flops_per_token: N -> FLOPs per token (default 6N). budgets: FLOPs at which to report
    allocations. window: Approach 2's parabola window (isoflop.py). method, constraints:
    Approach 3's fitter and objective; vpnls=True also fits Approach 3 by VPNLS beside a grid fit.
    An approach that fails (e.g. one IsoFLOP budget for Approach 2), or whose fit is not
    identified (identify.py), is left as None with the reason in `notes` and `failed`, unless
    strict=True, which raises. Invalid tables (missing columns, non-positive values) always
    raise ValueError. Duplicated (N, D) points and losses in implausible units warn.
    """
    shape = table_shape(results, table, budget_tol_dex)
    _check_arguments(method, approaches, n_bootstrap, window)
    budgets = tuple(float(c) for c in np.atleast_1d(budgets))
    df, budget = _prepared(results, shape, flops_per_token, budget_tol_dex)
    kw = dict(flops_per_token=flops_per_token, n_bootstrap=n_bootstrap, seed=seed, budgets=budgets, level=level)
    out: dict[object, object] = {1: None, 2: None, 3: None, "vpnls": None, "frontier": None}
    a3 = dict(opts=opts, constraints=constraints, **kw)
    calls = {1: lambda: approach1(results, curves, final_points=final_points, **kw),
             2: lambda: approach2(results, budget_tol_dex=budget_tol_dex, window=window, **kw),
             3: lambda: approach3(results, method=method, **a3),
             "vpnls": lambda: approach3(results, method="vpnls", **a3),
             "frontier": lambda: frontier(results, shape, delta=frontier_delta, window=window,
                                          budget_tol_dex=budget_tol_dex, **kw)}
    wanted = list(approaches) + (["vpnls"] if vpnls and 3 in approaches and method != "vpnls" else [])
    notes, failed = [], []
    for k in wanted:
        if shape == "minima" and k in MINIMA_SKIP:
            failed.append((APPROACH_NAMES[k], MINIMA_SKIP[k]))
            notes.append(f"{APPROACH_NAMES[k]} skipped: {MINIMA_SKIP[k]}")
            continue
        try:
            fit = calls[k]()
            why = identification(k, fit, df, budget)
            if why:
                raise _Unidentified(unidentified(why))
            out[k] = fit
        except Exception as err:  # noqa: BLE001 - one approach failing never hides the others
            if strict:
                raise
            why = str(err) if isinstance(err, (ValueError, _Unidentified)) else f"{type(err).__name__}: {err}"
            failed.append((APPROACH_NAMES[k], why))
            notes.append(f"{APPROACH_NAMES[k]} skipped: {why}")
    return Approaches(out[1], out[2], out[3], budgets, tuple(notes + _notes(out[1], out[2])),
                      approach3_vpnls=out["vpnls"], failed=tuple(failed), frontier=out["frontier"], shape=shape,
                      data_budgets=tuple(float(c) for c in np.unique(budget)))


def _check_arguments(method: str, approaches, n_bootstrap: int, window) -> None:
    """fit_approaches' settings, checked before any fit runs."""
    if method not in METHODS:
        raise ValueError(f"method={method!r}: use one of {METHODS}")
    bad = [k for k in approaches if k not in (1, 2, 3, "frontier")]
    if bad:
        raise ValueError(f"unknown approaches {bad}: choose from 1, 2, 3, frontier")
    if n_bootstrap == 1 or n_bootstrap < 0:
        raise ValueError(f"n_bootstrap={n_bootstrap}: use 0 (no intervals) or >= 2 (1000 for published intervals)")
    check_window(window)


def _prepared(results: pd.DataFrame, shape: str, flops_per_token, budget_tol_dex: float) -> tuple[pd.DataFrame, np.ndarray]:
    """(the checked table [n rows], each row's budget label [n]) for a runs or minima table."""
    if shape == "runs":
        df = prepare_results(results, flops_per_token)
        check_table(df)  # fail early, naming columns/rows
        return df, budgets_of(df, budget_tol_dex)
    from lm.scaling.frontier import prepare_minima
    df = prepare_minima(results)
    return df, df["budget"].to_numpy()


class _Unidentified(Exception):
    """A fit that ran but is not identified by its data (identify.py)."""


def _notes(a1, a2) -> list[str]:
    notes = []
    if a1 is not None and a1.source != "curves":
        notes.append(f"Approach 1 used {a1.source}")
    if a2 is not None:
        notes += [f"Approach 2 left out budget {s}" for s in a2.skipped]
        off = a2.isoflops.loc[~a2.isoflops["inside"], "budget"].tolist()
        if off:
            notes.append("Approach 2 minima outside the sizes used at budgets " + ", ".join(f"{c:.3g}" for c in off))
        if a2.unreliable:
            notes.append(f"Approach 2 is unreliable: {a2.n_rejected} of {a2.n_resamples} bootstrap resamples "
                         "rejected (parabola not convex or vertex outside the sizes sampled); widen the "
                         "window or sample more sizes around each minimum")
        if a2.d_source.startswith("C /"):
            notes.append("Approach 2 D_opt = C / f(N_opt) (no D column), so its b is 1 - a by construction")
    return notes


@dataclass(frozen=True)
class Extrapolation:
    """Approach 3 fitted without the largest budget, checked against that budget."""

    held_out_budget: float
    n_train: int
    """Runs fitted (those below the held-out budget)."""
    predicted_loss: float
    """The fitted law's loss at its compute-optimal (N, D) for the held-out budget."""
    observed_loss: float
    """The held-out IsoFLOP's parabola minimum (or its best run when no parabola fits)."""
    observed_kind: str
    predicted_N_opt: float
    observed_N_opt: float

    @property
    def error(self) -> float:
        """predicted - observed loss, nats/token."""
        return self.predicted_loss - self.observed_loss

    @property
    def relative_error(self) -> float:
        return self.error / self.observed_loss

    def summary(self) -> str:
        return (f"Extrapolation to C = {self.held_out_budget:.3g} (fitted on {self.n_train} smaller runs): "
                f"predicted loss {self.predicted_loss:.4f}, observed {self.observed_loss:.4f} "
                f"({self.observed_kind}); error {self.error:+.4f} ({100 * self.relative_error:+.2f}%); "
                f"N_opt predicted {self.predicted_N_opt:.3g}, observed {self.observed_N_opt:.3g}")


def extrapolation(results: pd.DataFrame, *, flops_per_token: FlopsPerToken | None = None,
                  budget_tol_dex: float = 0.05, delta: float = DELTA,
                  opts: LBFGSOptions = LBFGSOptions(), memo: dict | None = None) -> Extrapolation:
    """Hold out the largest budget, fit Approach 3 on the rest, predict its compute-optimal loss.
    memo: fit.fit_chinchilla's (forecast.forecast's k = 1 grid fit is this same fit)."""
    df = prepare_results(results, flops_per_token)
    budget = budgets_of(df, budget_tol_dex)
    top = budget.max()
    train, test = df[budget < top], df[budget == top]
    if len(np.unique(budget)) < 2:
        raise ValueError("extrapolation needs runs at 2 or more budgets; all runs share one budget")
    fit = fit_chinchilla(train["N"], train["D"], train["loss"], delta=delta, opts=opts, memo=memo)
    n_pred, d_pred = fit.law.optimal(top, flops_per_token)
    x = np.log(test["N"].to_numpy())
    y = test["loss"].to_numpy()
    kind, n_obs, l_obs = "best run", float(test["N"].iloc[int(np.argmin(y))]), float(y.min())
    if len(np.unique(x)) >= 3:
        xs, ls = parabola_vertex(fit_parabola(x - x.mean(), y, np.ones_like(y)), x.mean())
        if np.isfinite(xs) and x.min() <= xs <= x.max():
            kind, n_obs, l_obs = "parabola minimum", float(np.exp(xs)), float(ls)
    return Extrapolation(held_out_budget=float(top), n_train=len(train),
                         predicted_loss=float(fit.law.loss(n_pred, d_pred)), observed_loss=l_obs,
                         observed_kind=kind, predicted_N_opt=float(n_pred), observed_N_opt=n_obs)
