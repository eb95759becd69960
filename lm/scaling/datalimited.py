"""The data-constrained scaling law of Muennighoff et al. (2023), "Scaling Data-Constrained
Language Models" (eq. 5 and App. A), fitted two ways.

With U_D unique tokens seen for D/U_D epochs, repeated tokens are worth less: the effective data
    D' = U_D + U_D R_D* (1 - exp(-R_D / R_D*)),   R_D = D / U_D - 1 (repetitions),
and parameters beyond what U_D tokens can use are worth less: with U_N = min(N, N_opt(U_D)),
the compute-optimal size for U_D tokens under the base law,
    N' = U_N + U_N R_N* (1 - exp(-R_N / R_N*)),   R_N = N / U_N - 1,
and L = E + A / N'^alpha + B / D'^beta. The objective is always the Huber loss (delta 1e-3) of
log loss residuals, summed over runs.

Recipe "datablations" (`fit_data_constrained_table`'s default for their table): what produced
the published R_D* = 15.4, R_N* = 5.3, read off the datablations repository's notebook
(utils/parametric_fit.ipynb, "Fit default"): the base law is NOT fitted on their runs but fixed
to a Huber fit (alpha tied to beta) of Chinchilla's C4 IsoFLOP points (DATABLATIONS_BASE); only
R_D*, R_N* are fitted, by L-BFGS from the 9 starts {20/3, 40/3, 20}^2, on 182 of the runs: one
run per name (seed repeats dropped) minus the 49 the notebook leaves out as outliers (loss
rising with epochs, diverged runs; DATABLATIONS_LEFT_OUT). The objective is flat along a
valley in (R_D*, R_N*): the fit also runs a wide search (a log grid over [0.5, 100]^2 and
Nelder-Mead) and reports where it lands, so the weak identification is visible.

Recipe "single-epoch" (`fit_data_constrained` without `base`): the base law fitted on the
single-epoch runs (D <= U), alpha tied to beta (VPNLS, vpnls.py); R_D*, R_N* over all runs with
the base fixed (the wide search); then alternate: a single-epoch run with N > U_N is itself
discounted by R_N*, so the base is refitted on those runs' effective N', and R_D*, R_N*
refitted, until the objective settles (at most `rounds`). On runs drawn from the law it
recovers R_D*, R_N* to 5 % (tests/scaling/test_scaling_robust.py); on all 296 public runs it
does not give the published values (README, "Data-constrained law").
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

DATABLATIONS_BASE = ChinchillaLaw.from_log(6.255414, 7.3049974, 0.6254804, 0.3526596, 0.3526596)
"""The base law the published R_D*, R_N* were fitted with (E = 1.869, A = 520.8, B = 1487.7,
alpha = beta = 0.3527): the datablations notebook's Huber fit (alpha tied to beta) of 54 points
read off Chinchilla's C4 IsoFLOP figure (Hoffmann et al. 2022, App.), (a, b, e, alpha) as printed."""

DATABLATIONS_STARTS = tuple((r_d, r_n) for r_d in (20 / 3, 40 / 3, 20.0) for r_n in (20 / 3, 40 / 3, 20.0))
"""(R_D*, R_N*) starts of their L-BFGS: linspace(0, 20, 4)^2 less the zeros (R* = 0 is undefined)."""

DATABLATIONS_LEFT_OUT = (
    "2b84b4b", "2b88b4b", "2b812b4b", "2b816b4b", "2b824b4b", "2b855b1b25", "4b212b12b", "4b224b12b",
    "4b284b12b2", "4b284b1b9", "4b284b6b", "2b8100m100m", "14m7b5100m", "14m300b100m", "1b12b7100m",
    "1b13b9100m", "1b15b9100m", "1b17b5100m", "619m3b9100m", "619m5b9100m", "619m7b5100m", "2b84b8100m",
    "1b58b8100m", "1b112b100m", "619m22b100m", "421m300b1b5", "221m91b400m", "221m174b400m", "221m600b400m",
    "8b712b12b", "8b712b1b5", "8b712b400m", "8b712b100m", "3b926b1b5", "2b836b1b5", "2b836b400m",
    "2b836b100m", "2b246b400m", "2b246b100m", "1b566b1b5", "1b566b100m", "1b191b400m", "1b191b1b5",
    "1b1250b1b5", "1b5174b1b5", "2b291b1b5", "2b2174b1b5", "8b720b1b5", "2b877b1b5")
"""Run names of shared/data/muennighoff2023_datablations_runs.csv commented out of the notebook's
"Custom data loading with outliers removed" cell, which defines the published fit's runs."""

RECIPES = ("auto", "datablations", "single-epoch")


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
    """Huber objective of the R_D*, R_N* fit over the runs fitted."""
    n_single_epoch: int
    n_runs: int
    recipe: str = "single-epoch"
    """"datablations" (their base law fixed, their runs and starts) or "single-epoch" (module doc)."""
    wide: tuple[float, float, float] | None = None
    """(R_D*, R_N*, objective) of the wide search, where the recipe's own search was local."""

    def summary(self) -> str:
        b, r_d, r_n = self.law.base, self.law.R_D, self.law.R_N
        bound = [name for name, r in (("R_D*", r_d), ("R_N*", r_n)) if abs(np.log(r)) > R_BOUND - 0.01]
        if self.recipe == "datablations":
            head = (f"Data-constrained law (Muennighoff et al. 2023), datablations recipe: base {b} fixed "
                    f"(theirs, fitted on Chinchilla's C4 IsoFLOPs); R_D* = {r_d:.4g}, R_N* = {r_n:.4g} "
                    f"(published 15.4, 5.3) over their {self.n_runs} runs, L-BFGS from their 9 starts, "
                    f"objective {self.objective:.6e}")
        else:
            head = (f"Data-constrained law (Muennighoff et al. 2023), single-epoch recipe: base {b} (fitted "
                    f"on the {self.n_single_epoch} single-epoch runs, alpha = beta); R_D* = {r_d:.4g}, "
                    f"R_N* = {r_n:.4g} (published 15.4, 5.3) over {self.n_runs} runs, objective {self.objective:.4e}")
        if bound:
            head += f"; {', '.join(bound)} at the search bound e^{R_BOUND:g}: the data do not determine it"
        if self.wide is not None:
            w_d, w_n, w_obj = self.wide
            head += (f"; a wide search reaches objective {w_obj:.6e} ({100 * (w_obj / self.objective - 1):+.2f} %) "
                     f"at R_D* = {w_d:.4g}, R_N* = {w_n:.4g}: the objective is flat, so these runs pin R_D* "
                     "and R_N* down only weakly")
        return head


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


def _r_objective_and_grad(r, base, N, D, U, L, delta):
    """Objective and its gradient in (R_D*, R_N*) (not log), for gradient-based search."""
    r_d, r_n = float(r[0]), float(r[1])
    if not (r_d > 0 and r_n > 0):
        return np.inf, np.zeros(2)
    law = DataConstrainedLaw(base, r_d, r_n)
    u_n = np.minimum(N, law.unique_params(U))
    x_d, x_n = np.maximum(D / U - 1, 0) / r_d, np.maximum(N / u_n - 1, 0) / r_n
    n_eff, d_eff = u_n * (1 + r_n * -np.expm1(-x_n)), U * (1 + r_d * -np.expm1(-x_d))
    pred = base.E + base.A * n_eff ** -base.alpha + base.B * d_eff ** -base.beta
    resid = np.log(pred) - np.log(L)
    w = np.clip(resid, -delta, delta) / pred  # d huber / d pred
    dn = -base.alpha * base.A * n_eff ** (-base.alpha - 1) * u_n * (-np.expm1(-x_n) - x_n * np.exp(-x_n))
    dd = -base.beta * base.B * d_eff ** (-base.beta - 1) * U * (-np.expm1(-x_d) - x_d * np.exp(-x_d))
    return float(np.sum(huber(resid, delta))), np.array([np.sum(w * dd), np.sum(w * dn)])


def _fit_r_local(base, N, D, U, L, delta, starts):
    """R_D*, R_N* by L-BFGS from each start (the datablations way) -> (log R [2], objective) of the best."""
    best = None
    for s in starts:
        res = minimize(_r_objective_and_grad, np.asarray(s, float), args=(base, N, D, U, L, delta), jac=True,
                       method="L-BFGS-B", bounds=[(np.exp(-R_BOUND), np.exp(R_BOUND))] * 2,
                       options=dict(ftol=1e-15, gtol=1e-12, maxiter=5000))
        if np.isfinite(res.fun) and (best is None or res.fun < best.fun):
            best = res
    if best is None:
        raise ValueError(f"the R_D*, R_N* fit found no finite objective from the starts {list(starts)}")
    return np.log(best.x), float(best.fun)


def _single_epoch(N, D, U) -> np.ndarray:
    return D <= U * (1 + 1e-9)


def fit_data_constrained(N, D, U, loss, *, delta: float = DELTA, rounds: int = 6,
                         base: ChinchillaLaw | None = None, starts=None) -> DataConstrainedFit:
    """Fit the data-constrained law. N: [n] parameters; D: [n] tokens seen; U: [n] unique tokens.

    base None: the single-epoch recipe (module doc). base given: the base law is held fixed and
    only R_D*, R_N* are fitted: by L-BFGS from `starts` ((R_D*, R_N*) pairs; default
    DATABLATIONS_STARTS), with the wide search's result reported beside it (`wide`).
    """
    cols = check_points(2, N=N, D=D, U=U, loss=loss)
    N, D, U, L = cols["N"], cols["D"], cols["U"], cols["loss"]
    single = _single_epoch(N, D, U)
    if base is not None:
        log_r, obj = _fit_r_local(base, N, D, U, L, delta, DATABLATIONS_STARTS if starts is None else starts)
        w_log_r, w_obj = _fit_r(base, N, D, U, L, delta)
        law = DataConstrainedLaw(base, float(np.exp(log_r[0])), float(np.exp(log_r[1])))
        return DataConstrainedFit(law=law, objective=obj, n_single_epoch=int(single.sum()), n_runs=len(L),
                                  recipe="datablations", wide=(*np.exp(w_log_r).tolist(), w_obj))
    if len(np.unique(np.stack([N[single], D[single]], 1), axis=0)) < 5:
        raise ValueError(f"the base law needs >= 5 distinct single-epoch runs (D <= U); got {int(single.sum())}. "
                         "Add runs that see each token at most once, or pass a fixed base law (base=...)")
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


def _run_names(df: pd.DataFrame) -> pd.Series | None:
    for c in ("run_name", "run"):
        if c in df.columns:
            return df[c].astype(str)
    return None


def datablations_runs(df: pd.DataFrame) -> pd.DataFrame:
    """The runs the published R_D*, R_N* were fitted on, from their table (a run-name column
    `run_name` or `run`): one row per name, the last (their seed repeats carry the seeded run's
    name and come before it), less DATABLATIONS_LEFT_OUT. 182 of the 296 rows."""
    names = _run_names(df)
    if names is None:
        raise ValueError("the datablations recipe selects runs by name: the table needs a run_name (or run) column "
                         f"(lm-fit: --run-col run_name); columns: {list(df.columns)}")
    last = ~names.duplicated(keep="last")
    return df[last & ~names.isin(DATABLATIONS_LEFT_OUT)]


def is_datablations_table(df: pd.DataFrame) -> bool:
    """True for Muennighoff et al.'s own runs: every run they left out is present by name."""
    names = _run_names(df)
    return names is not None and set(DATABLATIONS_LEFT_OUT) <= set(names)


def fit_data_constrained_table(df: pd.DataFrame, recipe: str = "auto", **kw) -> DataConstrainedFit:
    """From a table with columns N, D, U (or U_unique_tokens) and loss (or val_loss).

    recipe: "datablations" (their runs, base law and starts: reproduces the published R_D*,
    R_N*; needs run names), "single-epoch" (the base law fitted on this table's single-epoch
    runs), or "auto": datablations for their own table (is_datablations_table), else single-epoch.
    """
    if recipe not in RECIPES:
        raise ValueError(f"recipe={recipe!r}: choose from {', '.join(RECIPES)}")
    u = "U" if "U" in df.columns else "U_unique_tokens"
    loss = "loss" if "loss" in df.columns else "val_loss"
    missing = [c for c in ("N", "D", u, loss) if c not in df.columns]
    if missing:
        raise ValueError(f"data-constrained fit needs columns N, D, U, loss; missing {missing} in {list(df.columns)}")
    if recipe == "datablations" or (recipe == "auto" and is_datablations_table(df)):
        df = datablations_runs(df)
        kw = dict(base=DATABLATIONS_BASE, starts=DATABLATIONS_STARTS) | kw
    return fit_data_constrained(df["N"], df["D"], df[u], df[loss], **kw)
