"""Kaplan et al. (2020) single-variable laws with bootstrap intervals: L(N), L(D), L(C_min).

Each is L(x) = (x_c / x)^alpha, a straight line in log-log (log L = alpha log x_c - alpha log x),
fitted by least squares as Kaplan did. From a results table:
- L(N): for each distinct N, its lowest loss (the model trained longest: data least limiting);
- L(D): for each distinct D, its lowest loss (the largest model: size least limiting);
- L(C_min): for each budget, its lowest loss (the compute-efficient frontier).
The bootstrap resamples those points with replacement and refits (all resamples at once).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from lm.scaling.bootstrap import Estimate, estimate, resample_weights
from lm.scaling.fit import check_points
from lm.scaling.isoflop import weighted_lstsq
from lm.scaling.laws import KaplanPowerLaw
from lm.scaling.results import budgets_of, prepare_results


@dataclass(frozen=True)
class KaplanFit:
    """L(x) = (x_c / x)^alpha fitted to points (x, loss), with bootstrap intervals."""

    variable: str
    """"N", "D" or "C"."""
    law: KaplanPowerLaw
    estimates: dict[str, Estimate]
    """x_c and alpha."""
    n_points: int

    def summary(self) -> str:
        e = self.estimates
        return (f"L({self.variable}) = ({self.variable}_c / {self.variable})^alpha_{self.variable}: "
                f"{self.variable}_c = {e['x_c']}, alpha_{self.variable} = {e['alpha']} ({self.n_points} points)")


def fit_kaplan_single(x, loss, *, variable: str = "x", n_bootstrap: int = 1000, seed: int = 0,
                      level: float = 0.95) -> KaplanFit:
    """Fit L(x) = (x_c / x)^alpha by least squares in log-log; x, loss: [n] (>= 3 distinct x)."""
    cols = check_points(2, x=x, loss=loss)
    lx, ly = np.log(cols["x"]), np.log(cols["loss"])
    X = np.stack([np.ones_like(lx), lx], axis=1)
    p = weighted_lstsq(X, ly, np.ones_like(lx))  # ly = p0 + p1 lx: alpha = -p1, log x_c = p0 / alpha
    W = resample_weights(len(lx), max(n_bootstrap, 0), np.random.default_rng(seed))
    ps = weighted_lstsq(X, ly, W) if len(W) else np.zeros((0, 2))
    alpha, alphas = -p[1], -ps[:, 1]
    with np.errstate(all="ignore"):
        xcs = np.exp(ps[:, 0] / alphas)
    law = KaplanPowerLaw(x_c=float(np.exp(p[0] / alpha)), alpha=float(alpha))
    est = {"x_c": estimate(law.x_c, xcs, level), "alpha": estimate(law.alpha, alphas, level)}
    return KaplanFit(variable=variable, law=law, estimates=est, n_points=len(lx))


def kaplan_fits(results: pd.DataFrame, *, flops_per_token=None, n_bootstrap: int = 1000, seed: int = 0,
                budget_tol_dex: float = 0.05, level: float = 0.95) -> dict[str, KaplanFit]:
    """{"N": L(N), "D": L(D), "C": L(C_min)} from a results table (points as in the module doc).

    A law whose points have fewer than 3 distinct values is left out (say, one budget for L(C))."""
    df = prepare_results(results, flops_per_token).assign(budget=lambda d: budgets_of(d, budget_tol_dex))
    out = {}
    for var, key in (("N", "N"), ("D", "D"), ("C", "budget")):
        best = df.groupby(key)["loss"].min()
        if len(best) < 3:
            continue
        out[var] = fit_kaplan_single(best.index.to_numpy(float), best.to_numpy(), variable=var,
                                     n_bootstrap=n_bootstrap, seed=seed, level=level)
    return out
