"""The data-constrained scaling law of Muennighoff et al. (2023), "Scaling Data-Constrained
Language Models" (eq. 5 and App. A), fitted as they did.

With U_D unique tokens seen for D/U_D epochs, repeated tokens are worth less: the effective data
    D' = U_D + U_D R_D* (1 - exp(-R_D / R_D*)),   R_D = D / U_D - 1 (repetitions),
and parameters beyond what U_D tokens can use are worth less: with U_N = min(N, N_opt(U_D)),
the compute-optimal size for U_D tokens under the base law,
    N' = U_N + U_N R_N* (1 - exp(-R_N / R_N*)),   R_N = N / U_N - 1,
and L = E + A / N'^alpha + B / D'^beta. Fit: (1) the base Chinchilla law on the single-epoch
runs (D <= U), alpha tied to beta, Huber (delta 1e-3) on log loss (by VPNLS, vpnls.py);
(2) R_D* and R_N* with the base law fixed, same objective over all runs: a grid over
log R_D*, log R_N* and Nelder-Mead from its best cell; then (3) alternate: a single-epoch run
with N > U_N is itself discounted by R_N*, so the base law is refitted on those runs' effective
N', and R_D*, R_N* refitted, until the objective settles (at most `rounds`). Their published fit: R_D* = 15.4,
R_N* = 5.3 (E = 1.87, A = 521, B = 1488, alpha = beta = 0.353; their notebook fitted that base
law on Chinchilla's C4 IsoFLOP points, not on their own runs). On the 296 runs of
shared/data/muennighoff2023_datablations_runs.csv this procedure does NOT reproduce those
values (see README, "Data-constrained law"); on runs drawn from the law it recovers R_D*, R_N*
to 5 % (tests/scaling/test_scaling_robust.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.optimize import minimize

from lm.scaling.constraints import FitConstraints
from lm.scaling.fit import DELTA, check_points, huber
from lm.scaling.laws import ChinchillaLaw
from lm.scaling.vpnls import fit_vpnls

MUENNIGHOFF_R_D, MUENNIGHOFF_R_N = 15.387756, 5.309743
"""Muennighoff et al. 2023's fitted R_D* and R_N* (datablations repository, parametric fit)."""


@dataclass(frozen=True)
class DataConstrainedLaw:
    """L(N, D, U) = E + A / N'^alpha + B / D'^beta with effective N', D' (module doc)."""

    base: ChinchillaLaw
    R_D: float
    """R_D*: repetitions of the data after which it is worth 1 - 1/e of the unique data's value."""
    R_N: float
    """R_N*: the same for excess parameters."""

    def unique_params(self, U):
        """U_N at U unique tokens: the base law's compute-optimal N for D = U (C = 6ND)."""
        law = self.base
        return law.G * (np.asarray(U, float) * law.G) ** (law.beta / law.alpha)

    def effective(self, N, D, U):
        """(N', D') for N parameters, D tokens seen, U unique tokens (broadcasting)."""
        N, D, U = (np.asarray(v, float) for v in (N, D, U))
        r_d = np.maximum(D / U - 1, 0)
        u_n = np.minimum(N, self.unique_params(U))
        r_n = np.maximum(N / u_n - 1, 0)
        return (u_n + u_n * self.R_N * (1 - np.exp(-r_n / self.R_N)),
                U + U * self.R_D * (1 - np.exp(-r_d / self.R_D)))

    def loss(self, N, D, U):
        n_eff, d_eff = self.effective(N, D, U)
        return self.base.loss(n_eff, d_eff)


@dataclass(frozen=True)
class DataConstrainedFit:
    law: DataConstrainedLaw
    objective: float
    """Huber objective of stage 2 over all runs."""
    n_single_epoch: int
    n_runs: int

    def summary(self) -> str:
        b = self.law.base
        bound = [name for name, r in (("R_D*", self.law.R_D), ("R_N*", self.law.R_N)) if abs(np.log(r)) > R_BOUND - 0.01]
        return (f"Data-constrained law (Muennighoff et al. 2023): base {b} (fitted on the "
                f"{self.n_single_epoch} single-epoch runs, alpha = beta); R_D* = {self.law.R_D:.4g}, "
                f"R_N* = {self.law.R_N:.4g} (published 15.4, 5.3) over {self.n_runs} runs, objective "
                f"{self.objective:.4e}" + (f"; {', '.join(bound)} at the search bound e^{R_BOUND:g}: the data do "
                                           "not determine it" if bound else ""))


R_BOUND = 12.0
"""Search range |log R*| < 12 for R_D*, R_N*."""


def _stage2_objective(log_r, base, N, D, U, L, delta):
    if not np.all(np.abs(log_r) < R_BOUND):
        return np.inf
    law = DataConstrainedLaw(base, float(np.exp(log_r[0])), float(np.exp(log_r[1])))
    return float(np.sum(huber(np.log(law.loss(N, D, U)) - np.log(L), delta)))


def _fit_r(base, N, D, U, L, delta):
    """R_D*, R_N* with the base law fixed: a grid over log R, then Nelder-Mead -> (log R [2], objective)."""
    grid = [(a, b) for a in np.log(np.geomspace(0.5, 100, 16)) for b in np.log(np.geomspace(0.5, 100, 16))]
    vals = [_stage2_objective(np.array(g), base, N, D, U, L, delta) for g in grid]
    res = minimize(_stage2_objective, np.array(grid[int(np.argmin(vals))]), args=(base, N, D, U, L, delta),
                   method="Nelder-Mead", options=dict(xatol=1e-8, fatol=1e-14, maxiter=2000))
    return res.x, float(res.fun)


def fit_data_constrained(N, D, U, loss, *, delta: float = DELTA, rounds: int = 6) -> DataConstrainedFit:
    """Fit the data-constrained law. N: [n] parameters; D: [n] tokens seen; U: [n] unique tokens."""
    cols = check_points(2, N=N, D=D, U=U, loss=loss)
    N, D, U, L = cols["N"], cols["D"], cols["U"], cols["loss"]
    single = D <= U * (1 + 1e-9)
    if len(np.unique(np.stack([N[single], D[single]], 1), axis=0)) < 5:
        raise ValueError(f"the base law needs >= 5 distinct single-epoch runs (D <= U); got {int(single.sum())}. "
                         "Add runs that see each token at most once")
    cons = FitConstraints(tie_exponents=True, delta=delta)
    base = fit_vpnls(N[single], D[single], L[single], constraints=cons).law
    log_r, obj = _fit_r(base, N, D, U, L, delta)
    for _ in range(rounds - 1):  # a single-epoch run with N > U_N is itself discounted by R_N*:
        law = DataConstrainedLaw(base, *np.exp(log_r))  # refit the base on its effective N'
        n_eff = law.effective(N[single], D[single], U[single])[0]
        base = fit_vpnls(n_eff, D[single], L[single], constraints=cons).law
        new_r, new_obj = _fit_r(base, N, D, U, L, delta)
        if abs(new_obj - obj) <= 1e-10 * obj:
            break
        log_r, obj = new_r, new_obj
    law = DataConstrainedLaw(base, float(np.exp(log_r[0])), float(np.exp(log_r[1])))
    return DataConstrainedFit(law=law, objective=obj, n_single_epoch=int(single.sum()), n_runs=len(L))


def fit_data_constrained_table(df: pd.DataFrame, **kw) -> DataConstrainedFit:
    """From a table with columns N, D, U (or U_unique_tokens) and loss (or val_loss)."""
    u = "U" if "U" in df.columns else "U_unique_tokens"
    loss = "loss" if "loss" in df.columns else "val_loss"
    missing = [c for c in ("N", "D", u, loss) if c not in df.columns]
    if missing:
        raise ValueError(f"data-constrained fit needs columns N, D, U, loss; missing {missing} in {list(df.columns)}")
    return fit_data_constrained(df["N"], df["D"], df[u], df[loss], **kw)
