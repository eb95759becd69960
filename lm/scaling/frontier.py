"""The frontier law: the compute-optimal loss L_opt(C) = E + K C^-gamma, and N_opt(C), D_opt(C).

Fitted on per-budget minima: a minima table's own rows (one per budget: C, loss, optionally N
and D of the optimum), or, for a per-run table, each budget's windowed IsoFLOP parabola minimum
(isoflop.fit_budget; budgets whose vertex falls outside the sizes used are left out). The loss
law is fitted by `fit.fit_offset_power_law` on log loss: Huber with `delta` (LS_DELTA = plain
least squares, the naive baseline) from a grid of starts. N_opt(C) and D_opt(C) are power laws
by least squares in log-log where the minima carry N and D.

Intervals: a residual bootstrap. Each resample adds the fit's own log residuals, drawn with
replacement, to its fitted log losses (and N, D) and refits (bootstrap.refit_offset_power_laws,
batched); a minima table has a handful of rows, too few to resample the rows themselves. A
forecast's interval at budget C is the spread of the resampled laws at C times the noise of one
observed minimum (a draw of the residuals), so it covers where a new minimum will be observed.

    minima = frontier_minima(results)          # budget, loss, N, D, n_used
    fr = fit_frontier(minima, n_bootstrap=200) # Frontier: law, n_opt, d_opt, estimates
    loss, lo, hi = fr.predict([1e22])
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from lm.scaling.bootstrap import Estimate, estimate, refit_offset_power_laws
from lm.scaling.fit import DELTA, fit_offset_power_law, fit_power_law
from lm.scaling.isoflop import fit_budget
from lm.scaling.laws import OffsetPowerLaw, PowerLaw
from lm.scaling.results import budgets_of, prepare_results

LS_DELTA = 1e3
"""A Huber threshold no log-loss residual reaches: the Huber objective is then least squares."""
MIN_BUDGETS = 4
"""The loss law has 3 parameters: at least 4 distinct budgets."""
MAX_RESAMPLES = 200
"""The frontier's bootstrap draws at most this many resamples (each is a batched 3-parameter refit;
200 keep lm-fit's default of 1,000 elsewhere from costing seconds here)."""


def describe_delta(delta: float) -> str:
    return "least squares" if delta >= LS_DELTA else f"Huber δ={delta:g}"


def prepare_minima(table: pd.DataFrame) -> pd.DataFrame:
    """A minima table (C or budget, loss, optional N, D) -> budget, loss, N, D, n_used [k], by budget.

    C comes from a C or budget column, or from 6 N D when only N and D are given.
    """
    df = table.copy()
    if "C" not in df.columns and "budget" in df.columns:
        df["C"] = df["budget"]
    if "C" not in df.columns and {"N", "D"} <= set(df.columns):
        df["C"] = 6.0 * df["N"].astype(float) * df["D"].astype(float)
    missing = [c for c in ("C", "loss") if c not in df.columns]
    if missing:
        raise ValueError(f"a minima table needs columns C (or budget) and loss; it lacks {missing} "
                         f"(columns: {list(table.columns)}; lm-fit: --c-col/--loss-col)")
    out = pd.DataFrame({"budget": pd.to_numeric(df["C"], errors="coerce"),
                        "loss": pd.to_numeric(df["loss"], errors="coerce")})
    for col in ("N", "D"):
        out[col] = pd.to_numeric(df[col], errors="coerce") if col in df.columns else np.nan
    for col in ("budget", "loss"):
        v = out[col].to_numpy(float)
        bad = ~(np.isfinite(v) & (v > 0))
        if bad.any():
            raise ValueError(f"minima column {col!r} must be finite and > 0; bad rows {np.flatnonzero(bad)[:10].tolist()}")
    out["n_used"] = 1
    return out.sort_values("budget", kind="stable").reset_index(drop=True)


def frontier_minima(results: pd.DataFrame, *, window=5, flops_per_token=None,
                    budget_tol_dex: float = 0.05) -> pd.DataFrame:
    """Per-run table -> one row per budget whose parabola vertex lies inside the sizes used:
    budget, loss, N, D, n_used (points in the parabola)."""
    d_from_data = "D" in results.columns
    df = prepare_results(results, flops_per_token).assign(budget=lambda d: budgets_of(d, budget_tol_dex))
    rows = []
    for c, g in df.groupby("budget", sort=True):
        row, _, _ = fit_budget(c, g, window, 3, d_from_data, flops_per_token)
        if row is not None and row["inside"]:
            rows.append(dict(budget=float(c), loss=row["loss_opt"], N=row["N_opt"], D=row["D_opt"],
                             n_used=row["n_used"]))
    return pd.DataFrame(rows, columns=["budget", "loss", "N", "D", "n_used"])


@dataclass(frozen=True)
class Frontier:
    """L_opt(C) = E + K C^-gamma with N_opt(C), D_opt(C) power laws where the minima have N, D."""

    law: OffsetPowerLaw
    n_opt: PowerLaw | None
    d_opt: PowerLaw | None
    minima: pd.DataFrame = field(repr=False)
    """The fitted minima: budget, loss, N, D, n_used."""
    delta: float
    estimates: dict[str, Estimate]
    """E, K, gamma, (a, b, G_N, G_D), and L_opt@C (N_opt@C, D_opt@C) per budget asked for."""
    samples: tuple = field(default=(), repr=False)
    """Resampled (law, n_opt, d_opt) triples (None where a refit failed)."""
    resid: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)
    """[k] log residuals log L_i - log L_opt(C_i) of the fit."""
    theta: np.ndarray = field(default_factory=lambda: np.zeros(3), repr=False)
    """(log E, log K, gamma) of the fit (identify.py's Jacobian)."""

    @property
    def name(self) -> str:
        return f"frontier ({describe_delta(self.delta)})"

    def predict(self, C, level: float = 0.9, seed: int = 0):
        """Predicted minimum loss [m] at budgets C [m] with the (lo, hi) interval of one observed minimum."""
        C = np.atleast_1d(np.asarray(C, float))
        pred = self.law.loss(C)
        laws = [s[0] for s in self.samples if s[0] is not None]
        if len(laws) < 2 or len(self.resid) == 0:
            return pred, np.full_like(pred, np.nan), np.full_like(pred, np.nan)
        draws = np.array([b.loss(C) for b in laws])  # [R, m]
        noise = np.random.default_rng(seed).choice(self.resid, size=draws.shape)
        lo, hi = np.quantile(draws * np.exp(noise), [(1 - level) / 2, (1 + level) / 2], axis=0)
        return pred, lo, hi

    def allocation(self, C):
        """(N_opt, D_opt) [m] at budgets C; nan where the minima carry no N or D."""
        C = np.atleast_1d(np.asarray(C, float))
        nan = np.full_like(C, np.nan)
        return (self.n_opt(C) if self.n_opt else nan), (self.d_opt(C) if self.d_opt else nan)

    def summary(self) -> str:
        e = self.estimates
        lines = [f"{self.name} on {len(self.minima)} per-budget minima: L_opt(C) = E + K·C^-gamma",
                 *(f"  {k:>6} = {e[k]}" for k in ("E", "K", "gamma"))]
        if "a" in e:
            lines.append(f"  N_opt ∝ C^a: a = {e['a']}" + (f"   D_opt ∝ C^b: b = {e['b']}" if "b" in e else ""))
        return "\n".join(lines)


def _power_law(C, y) -> PowerLaw | None:
    ok = np.isfinite(y) & (y > 0)
    if ok.sum() < 3 or len(np.unique(C[ok])) < 3:
        return None
    return fit_power_law(C[ok], y[ok])


def fit_frontier(minima: pd.DataFrame, *, delta: float = LS_DELTA, n_bootstrap: int = 200, seed: int = 0,
                 budgets=(), level: float = 0.95) -> Frontier:
    """Fit the frontier law to minima (budget, loss[, N, D]); ValueError with < 4 distinct budgets."""
    C, L = minima["budget"].to_numpy(float), minima["loss"].to_numpy(float)
    if len(np.unique(C)) < MIN_BUDGETS:
        raise ValueError(f"the frontier law needs >= {MIN_BUDGETS} budgets with a minimum (3 parameters); "
                         f"got {len(np.unique(C))}")
    fit = fit_offset_power_law(C, L, delta=delta)
    law = fit.law
    N = minima["N"].to_numpy(float) if "N" in minima else np.full_like(C, np.nan)
    D = minima["D"].to_numpy(float) if "D" in minima else np.full_like(C, np.nan)
    n_law, d_law = _power_law(C, N), _power_law(C, D)
    resid = np.log(L) - np.log(law.loss(C))
    samples = _resample(C, L, N, D, law, fit, n_law, d_law, resid, min(n_bootstrap, MAX_RESAMPLES), seed, delta)
    est = _estimates(law, n_law, d_law, samples, budgets, level)
    theta = np.array([np.log(max(law.E, 1e-300)), np.log(law.K), law.gamma])
    return Frontier(law=law, n_opt=n_law, d_opt=d_law, minima=minima.reset_index(drop=True), delta=delta,
                    estimates=est, samples=tuple(samples), resid=resid, theta=theta)


def _resample(C, L, N, D, law, fit, n_law, d_law, resid, n_bootstrap, seed, delta):
    if n_bootstrap < 2:
        return []
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(C), size=(n_bootstrap, len(C)))
    losses = law.loss(C)[None] * np.exp(resid[idx])  # [R, k]
    laws = refit_offset_power_laws(C, losses, fit, delta=delta)
    out = []
    for r, b in enumerate(laws):
        nl = dl = None
        if n_law is not None:
            rn = np.log(N) - np.log(n_law(C))
            nl = _power_law(C, n_law(C) * np.exp(rn[idx[r]]))
        if d_law is not None:
            rd = np.log(D) - np.log(d_law(C))
            dl = _power_law(C, d_law(C) * np.exp(rd[idx[r]]))
        out.append((b, nl, dl))
    return out


def _estimates(law, n_law, d_law, samples, budgets, level) -> dict[str, Estimate]:
    get = lambda i, f: np.array([f(s[i]) if s[i] is not None else np.nan for s in samples])
    est = {k: estimate(getattr(law, k), get(0, lambda b, k=k: getattr(b, k)), level) for k in ("E", "K", "gamma")}
    if n_law is not None:
        est["a"] = estimate(n_law.a, get(1, lambda p: p.a), level)
        est["G_N"] = estimate(n_law.G, get(1, lambda p: p.G), level)
    if d_law is not None:
        est["b"] = estimate(d_law.a, get(2, lambda p: p.a), level)
        est["G_D"] = estimate(d_law.G, get(2, lambda p: p.G), level)
    for c in budgets:
        est[f"L_opt@{c:.3g}"] = estimate(float(law.loss(c)), get(0, lambda b: float(b.loss(c))), level)
        if n_law is not None:
            est[f"N_opt@{c:.3g}"] = estimate(float(n_law(c)), get(1, lambda p: float(p(c))), level)
        if d_law is not None:
            est[f"D_opt@{c:.3g}"] = estimate(float(d_law(c)), get(2, lambda p: float(p(c))), level)
    return est


def frontier(results: pd.DataFrame, shape: str, *, delta: float = LS_DELTA, n_bootstrap: int = 200, seed: int = 0,
             budgets=(), level: float = 0.95, window=5, flops_per_token=None, budget_tol_dex: float = 0.05) -> Frontier:
    """The frontier approach on a table of `shape` "runs" or "minima" (results.table_shape)."""
    minima = (prepare_minima(results) if shape == "minima" else
              frontier_minima(results, window=window, flops_per_token=flops_per_token, budget_tol_dex=budget_tol_dex))
    return fit_frontier(minima, delta=delta, n_bootstrap=n_bootstrap, seed=seed, budgets=budgets, level=level)


__all__ = ["DELTA", "LS_DELTA", "Frontier", "fit_frontier", "frontier", "frontier_minima", "prepare_minima"]
