"""Variable projection (VPNLS) for L = E + A/N^alpha + B/D^beta.

For fixed exponents (alpha, beta) the law is linear in (E, A, B) >= 0, so the 5-parameter fit
is a 2-parameter outer problem over (alpha, beta) whose inner problem is a non-negative least
squares (NNLS) with 3 unknowns, solved exactly by enumerating active sets (7 subsets; the
optimum of a convex QP is the unconstrained optimum on its support). The inner problem matches
the fit's objective: residuals are scaled by 1/loss in log space (log pred - log L ≈ (pred - L)/L)
and reweighted for the Huber loss (IRLS: weight min(1, delta/|r|)). Steps:

1. grid: every (alpha, beta) on a 32 x 32 grid over [0.02, 2] (log-spaced), all at once;
2. polish: Nelder-Mead on the profile objective from the best grid cell;
3. finish: L-BFGS on the full Huber objective from the polished point, the best 16 grid cells
   and a small jittered cloud around the polished point (the Huber objective with delta = 1e-3
   is nearly piecewise linear, with shallow local minima side by side); the best is kept. The
   result is then a stationary point of exactly the objective the grid fit minimises, with
   fixed E, alpha = beta, delta and loss space as in constraints.py.

The outer problem has no bad starts to speak of: the grid covers it and every grid cell's
(E, A, B) is optimal for its exponents.
"""

from __future__ import annotations

import itertools

import numpy as np
from scipy.optimize import minimize, nnls

from lm.scaling.constraints import FitConstraints
from lm.scaling.fit import FitResult, best_fit, check_points, chinchilla_objective_for
from lm.scaling.laws import ChinchillaLaw
from lm.scaling.optimize import LBFGSOptions, minimize_batch

EXPONENT_GRID = np.geomspace(0.02, 2.0, 32)
"""Outer grid for alpha and beta."""
IRLS_STEPS = 8
CLOUD = 48
"""Jittered copies of the polished point that also start the finish: the Huber objective with
delta = 1e-3 has many shallow local minima next to each other, and the finish keeps the best."""
CLOUD_SCALE = np.array([0.05, 0.05, 0.01, 0.003, 0.003])
"""Jitter sd in (log A, log B, log E, alpha, beta)."""


def nnls_small(G, h):
    """min_x x^T G x - 2 h^T x over x >= 0, exactly, batched. G: [..., k, k]; h: [..., k] (k <= 3)."""
    k = G.shape[-1]
    best_x = np.zeros(h.shape)
    best_f = np.zeros(h.shape[:-1])
    for size in range(1, k + 1):
        for S in itertools.combinations(range(k), size):
            S = list(S)
            Gs = G[..., S, :][..., :, S]
            with np.errstate(all="ignore"):
                det_ok = np.abs(np.linalg.det(Gs)) > 1e-300
                xs = np.linalg.solve(np.where(det_ok[..., None, None], Gs, np.eye(size)), h[..., S, None])[..., 0]
            ok = det_ok & np.all(xs >= 0, axis=-1)
            f = -np.sum(h[..., S] * xs, axis=-1)  # x^T G x - 2 h^T x at the optimum = -h^T x
            better = ok & (f < best_f)
            x = np.zeros(h.shape)
            x[..., S] = xs
            best_x = np.where(better[..., None], x, best_x)
            best_f = np.where(better, f, best_f)
    return best_x


def _design(alpha, beta, lN, lD, cons: FitConstraints):
    """Features [..., n, k] for exponents [...]: (1, N^-alpha, D^-beta), without 1 when E is fixed."""
    fa = np.exp(-np.asarray(alpha)[..., None] * lN)
    fb = np.exp(-np.asarray(beta)[..., None] * lD)
    cols = [fa, fb] if cons.fix_E is not None else [np.ones_like(fa), fa, fb]
    return np.stack(cols, axis=-1)


def inner(alpha, beta, lN, lD, L, w, cons: FitConstraints):
    """(E, A, B) [..., 3] at fixed exponents [...], by IRLS-weighted NNLS; and the objective [...]."""
    X = _design(alpha, beta, lN, lD, cons)  # [..., n, k]
    y = L - (cons.fix_E or 0.0)
    scale = 1.0 / L ** 2 if cons.space == "log" else np.ones_like(L)
    hw = np.ones(X.shape[:-1])
    for _ in range(IRLS_STEPS):
        W = w * scale * hw  # [..., n]
        if X.ndim == 2:  # one cell (the polish): scipy's NNLS on the row-scaled system
            sw = np.sqrt(W)
            coef = nnls(X * sw[:, None], y * sw)[0]
        else:
            XtW = np.swapaxes(X, -1, -2) * W[..., None, :]  # [..., k, n]
            coef = nnls_small(XtW @ X, XtW @ y)
        pred = (X @ coef[..., None])[..., 0] + (cons.fix_E or 0.0)
        with np.errstate(all="ignore"):
            r = np.log(np.maximum(pred, 1e-300)) - np.log(L) if cons.space == "log" else pred - L
        ar = np.abs(r)
        hw = np.where(ar <= cons.delta, 1.0, cons.delta / np.maximum(ar, 1e-300))
    h_loss = np.where(ar <= cons.delta, 0.5 * r * r, cons.delta * (ar - 0.5 * cons.delta))
    obj = np.where(np.all(pred > 0, axis=-1), np.sum(w * h_loss, axis=-1), np.inf)
    E = np.full(coef.shape[:-1], cons.fix_E) if cons.fix_E is not None else coef[..., 0]
    return np.stack([E, coef[..., -2], coef[..., -1]], axis=-1), obj


def _theta(alpha, beta, EAB) -> np.ndarray:
    """(log A, log B, log E, alpha, beta) [..., 5]; zero coefficients clipped to a tiny value."""
    E, A, B = (np.log(np.maximum(EAB[..., i], 1e-12)) for i in range(3))
    return np.stack([A, B, E, np.asarray(alpha, float), np.asarray(beta, float)], axis=-1)


def _profile_minima(lN, lD, L, w, cons: FitConstraints, n_cells: int, seed: int = 0) -> np.ndarray:
    """Grid over the exponents, Nelder-Mead from the best cell, -> starts [K, 5] for the finish:
    the polished point, the best `n_cells` grid cells, and a small cloud around the polished point."""
    g = EXPONENT_GRID
    al, be = (g, g) if cons.tie_exponents else np.meshgrid(g, g, indexing="ij")
    al, be = al.ravel(), be.ravel()
    eab, obj = inner(al, be, lN, lD, L, w, cons)
    order = np.argsort(np.where(np.isfinite(obj), obj, np.inf))[:n_cells]

    def profile(z):
        a, b = (z[0], z[0]) if cons.tie_exponents else (z[0], z[1])
        if not (0 < a < 10 and 0 < b < 10):
            return np.inf
        return float(inner(np.array(a), np.array(b), lN, lD, L, w, cons)[1])

    i = order[0]
    res = minimize(profile, [al[i]] if cons.tie_exponents else [al[i], be[i]], method="Nelder-Mead",
                   options=dict(xatol=1e-6, fatol=1e-14, maxiter=400))
    a, b = (res.x[0], res.x[0]) if cons.tie_exponents else res.x
    best = _theta(a, b, inner(np.array(a), np.array(b), lN, lD, L, w, cons)[0])
    cloud = best + np.random.default_rng(seed).normal(size=(CLOUD, 5)) * CLOUD_SCALE
    return np.concatenate([best[None], _theta(al[order], be[order], eab[order]), cloud])


def fit_vpnls(N, D, loss, *, constraints: FitConstraints | None = None, weights=None, n_cells: int = 16,
              opts: LBFGSOptions = LBFGSOptions()) -> FitResult:
    """Approach 3 by variable projection. N, D, loss: [n]; weights: optional [n].

    Returns a FitResult like fit.fit_chinchilla's (its basin_starts are the polished profile
    minima, warm starts for bootstrap.bootstrap_chinchilla).
    """
    cons = constraints or FitConstraints()
    cols = check_points(cons.n_free(), N=N, D=D, loss=loss)
    lN, lD, L = np.log(cols["N"]), np.log(cols["D"]), cols["loss"]
    w = np.ones_like(L) if weights is None else np.asarray(weights, float)
    starts = cons.apply(_profile_minima(lN, lD, L, w, cons, n_cells))
    objective, data_of, apply = chinchilla_objective_for(None if cons.default else cons, cons.delta)
    res = minimize_batch(objective, starts, w, data_of(cols["N"], cols["D"], L), opts)
    law = lambda t: ChinchillaLaw.from_log(*apply(t))
    return best_fit(res, starts, law, lambda t: np.log(law(t).loss(cols["N"], cols["D"])), len(L))
