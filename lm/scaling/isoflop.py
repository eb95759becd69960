"""Chinchilla Approach 2: IsoFLOP parabolas -> minima -> N_opt(C), D_opt(C).

Per budget, loss is fitted by a parabola in ln N; its vertex is N_opt and D_opt = C / f(N_opt)
(Hoffmann et al. 2022, sec. 3.2). Power laws across budgets by least squares in log-log. The
bootstrap resamples points within each budget (weighted parabolas, all resamples at once).
A vertex outside the sizes sampled warns: an off-centre IsoFLOP extrapolates the parabola
and biases N_opt.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from lm.scaling.bootstrap import PowerLawFits, power_law_fits
from lm.scaling.envelope import CHINCHILLA_TABLE3_BUDGETS
from lm.scaling.laws import FlopsPerToken
from lm.scaling.results import _flops_per_token, budgets_of, prepare_results


@dataclass(frozen=True)
class Approach2:
    """IsoFLOP parabolas -> minima -> N_opt(C), D_opt(C)."""

    isoflops: pd.DataFrame = field(repr=False)
    """One row per budget: budget, n_points, p0, p1, p2 (loss = p0 + p1 u + p2 u^2 with
    u = ln N - x0), x0, N_opt, D_opt, loss_opt, N_min, N_max, inside (minimum within sizes)."""
    points: pd.DataFrame = field(repr=False)
    """The runs used, with their budget label."""
    fits: PowerLawFits
    skipped: tuple[str, ...]
    """Budgets left out, with the reason."""

    def summary(self) -> str:
        off = int((~self.isoflops["inside"]).sum())
        return (f"Approach 2 ({len(self.isoflops)} budgets, {off} minima outside sampled sizes, "
                f"{len(self.skipped)} skipped): {self.fits.summary()}")


def fit_parabola(u, y, w):
    """Weighted least squares loss = p0 + p1 u + p2 u^2. u, y: [n]; w: [..., n] -> p [..., 3].

    Rows whose normal equations are singular (fewer than 3 distinct sizes weighted) get nan.
    """
    X = np.stack([np.ones_like(u), u, u * u], axis=1)  # [n, 3]
    XtW = X.T * np.asarray(w, float)[..., None, :]  # [..., 3, n]
    A, rhs = XtW @ X, XtW @ y  # [..., 3, 3], [..., 3]
    scale = np.abs(A).max(axis=(-1, -2))
    ok = np.abs(np.linalg.det(A)) > 1e-10 * scale ** 3
    p = np.linalg.solve(np.where(ok[..., None, None], A, np.eye(3)), rhs[..., None])[..., 0]
    return np.where(ok[..., None], p, np.nan)


def parabola_vertex(p, x0):
    """Minimum (x*, loss*) of each parabola; nan where not convex."""
    p0, p1, p2 = np.moveaxis(np.asarray(p, float), -1, 0)
    with np.errstate(all="ignore"):
        u = np.where(p2 > 0, -p1 / (2 * p2), np.nan)
    return x0 + u, p0 + p1 * u + p2 * u * u


def approach2(results: pd.DataFrame, *, flops_per_token: FlopsPerToken | None = None,
              budget_tol_dex: float = 0.05, min_points: int = 3, drop_off_centre: bool = False,
              n_bootstrap: int = 1000, seed: int = 0, budgets=CHINCHILLA_TABLE3_BUDGETS,
              level: float = 0.95) -> Approach2:
    """Chinchilla Approach 2; budgets from the `budget` column or by clustering log10 C."""
    df = prepare_results(results, flops_per_token).assign(budget=lambda d: budgets_of(d, budget_tol_dex))
    rng = np.random.default_rng(seed)
    rows, skipped, boot_x = [], [], []
    for budget, g in df.groupby("budget", sort=True):
        x = np.log(g["N"].to_numpy())
        y = g["loss"].to_numpy()
        if len(np.unique(x)) < min_points:
            skipped.append(f"{budget:.3g}: {len(np.unique(x))} distinct sizes < {min_points}")
            continue
        x0 = x.mean()
        p = fit_parabola(x - x0, y, np.ones_like(y))
        xs, ls = parabola_vertex(p, x0)
        if not np.isfinite(xs):
            skipped.append(f"{budget:.3g}: loss is not convex in log N (p2 = {p[2]:.3g} <= 0)")
            continue
        inside = bool(x.min() <= xs <= x.max())
        if not inside:
            warnings.warn(f"IsoFLOP budget {budget:.3g}: the parabola's minimum N = {np.exp(xs):.3g} lies "
                          f"outside the sizes sampled [{np.exp(x.min()):.3g}, {np.exp(x.max()):.3g}]; "
                          "an off-centre IsoFLOP biases Approach 2 - sample sizes around the minimum",
                          stacklevel=2)
            if drop_off_centre:
                skipped.append(f"{budget:.3g}: minimum outside sampled sizes (drop_off_centre)")
                continue
        n_opt = float(np.exp(xs))
        rows.append(dict(budget=budget, n_points=len(g), p0=p[0], p1=p[1], p2=p[2], x0=x0, N_opt=n_opt,
                         D_opt=budget / _flops_per_token(flops_per_token, np.array([n_opt]))[0],
                         loss_opt=float(ls), N_min=float(np.exp(x.min())),
                         N_max=float(np.exp(x.max())), inside=inside))
        w = rng.multinomial(len(x), np.full(len(x), 1 / len(x)), size=n_bootstrap).astype(float)
        boot_x.append(parabola_vertex(fit_parabola(x - x0, y, w), x0)[0])  # [R]
    if len(rows) < 2:
        raise ValueError(f"Approach 2 needs at least 2 IsoFLOP budgets with >= {min_points} sizes and a "
                         f"convex parabola; got {len(rows)} (skipped: {skipped or 'none'}). Add a "
                         "'budget' column or runs at more budgets")
    iso = pd.DataFrame(rows)
    C = iso["budget"].to_numpy()
    X = np.stack(boot_x, axis=1)  # [R, budgets]
    samples = []
    for xr in X:
        ok = np.isfinite(xr)
        Nr = np.exp(xr[ok])
        samples.append((C[ok], Nr, C[ok] / _flops_per_token(flops_per_token, Nr)))
    fits = power_law_fits(C, iso["N_opt"].to_numpy(), iso["D_opt"].to_numpy(), samples, budgets, level)
    return Approach2(isoflops=iso, points=df, fits=fits, skipped=tuple(skipped))
