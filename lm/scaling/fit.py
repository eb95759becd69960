"""Robust scaling-law fits: Chinchilla Approach 3 as published, Kaplan L(N, D), L(C) offsets.

Approach 3 (Hoffmann et al. 2022, App. D.2; Besiroglu et al. 2024): minimise over
theta = (a, b, e, alpha, beta)

    sum_i Huber_delta( LSE(a - alpha log N_i, b - beta log D_i, e) - log L_i ),  delta = 1e-3,

(a SUM over points, not a mean: a mean shrinks the gradient n-fold, and under scipy's default
tolerances L-BFGS then stops at Chinchilla's published values), in float64, by L-BFGS from every start of Chinchilla's 4,500-point grid, keeping
the best objective. Then E = e^e, A = e^a, B = e^b. All starts run at once through
`optimize.minimize_batch`; bootstrap refits run the same way with resampled-point
multiplicities as weights (see bootstrap.py).

Kaplan's L(N, D) and the offset power law L(C) = E + K C^-gamma are fitted the same robust way
(Huber on log-residuals, grid of starts, best objective).
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np

from lm.scaling.constraints import jax_constrained_objective
from lm.scaling.huber import DELTA, huber, jax_huber, logsumexp3  # noqa: F401  (huber: part of this API)
from lm.scaling.laws import ChinchillaLaw, KaplanLaw, OffsetPowerLaw, PowerLaw
from lm.scaling.optimize import BatchResult, LBFGSOptions, minimize_batch


def chinchilla_grid() -> np.ndarray:
    """[4500, 5] starts (a, b, e, alpha, beta): Chinchilla's grid (Hoffmann et al. App. D.2).

    alpha, beta in {0, 0.5, 1, 1.5, 2}; e in {-1, -.5, 0, .5, 1}; a, b in {0, 5, ..., 25}.
    """
    ab = [0.0, 5.0, 10.0, 15.0, 20.0, 25.0]
    e = [-1.0, -0.5, 0.0, 0.5, 1.0]
    exps = [0.0, 0.5, 1.0, 1.5, 2.0]
    return np.array(list(itertools.product(ab, ab, e, exps, exps)), dtype=np.float64)


def kaplan_grid() -> np.ndarray:
    """[400, 4] starts (log N_c, log D_c, alpha_N, alpha_D) spanning Kaplan's published values."""
    logs = [20.0, 25.0, 30.0, 35.0, 40.0]
    exps = [0.05, 0.1, 0.2, 0.4]
    return np.array(list(itertools.product(logs, logs, exps, exps)), dtype=np.float64)


def offset_grid() -> np.ndarray:
    """[180, 3] starts (k, gamma, e) for log L = LSE(k - gamma (log C - log C_ref), e)."""
    return np.array(list(itertools.product(
        [-4.0, -3.0, -2.0, -1.0, 0.0, 1.0], [0.05, 0.1, 0.2, 0.4, 0.8],
        [-1.0, -0.5, 0.0, 0.5, 1.0, 1.5])), dtype=np.float64)


def jax_chinchilla_objective(theta, w, lN, lD, lL, delta):
    """Weighted Huber objective. theta: [5] (a, b, e, alpha, beta); w, lN, lD, lL: [n]."""
    a, b, e, alpha, beta = theta
    pred = logsumexp3(a - alpha * lN, b - beta * lD, jnp.broadcast_to(e, lN.shape))
    return jnp.sum(w * jax_huber(pred - lL, delta))


def jax_kaplan_objective(theta, w, lN, lD, lL, delta):
    """theta: [4] (log N_c, log D_c, alpha_N, alpha_D); log L = alpha_D LSE(p (n_c - lN), d_c - lD)."""
    nc, dc, alpha_n, alpha_d = theta
    u1, u2 = alpha_n / alpha_d * (nc - lN), dc - lD
    m = jax.lax.stop_gradient(jnp.maximum(u1, u2))
    pred = alpha_d * (m + jnp.log(jnp.exp(u1 - m) + jnp.exp(u2 - m)))
    return jnp.sum(w * jax_huber(pred - lL, delta))


def jax_offset_objective(theta, w, lC, lL, delta):
    """theta: [3] (k, gamma, e) with lC centred; log L = LSE(k - gamma lC, e)."""
    k, gamma, e = theta
    u1 = k - gamma * lC
    m = jax.lax.stop_gradient(jnp.maximum(u1, e))
    pred = m + jnp.log(jnp.exp(u1 - m) + jnp.exp(e - m))
    return jnp.sum(w * jax_huber(pred - lL, delta))


def check_points(n_params: int, **columns) -> dict[str, np.ndarray]:
    """Validate equal-length 1-D columns (e.g. N=..., D=..., loss=...) where input enters.

    Every value must be finite and > 0, and there must be more distinct points than parameters
    (the last column is the response: points repeating every other column count once).
    Returns the columns as float64 arrays; raises ValueError naming the column and rows.
    """
    out = {name: np.asarray(v, dtype=np.float64).reshape(-1) for name, v in columns.items()}
    lengths = {name: len(v) for name, v in out.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"columns differ in length: {lengths}; pass one value per run for each")
    for name, v in out.items():
        bad = np.flatnonzero(~(np.isfinite(v) & (v > 0)))
        if len(bad):
            raise ValueError(
                f"column {name!r} must be finite and > 0; bad rows {bad[:10].tolist()}"
                f"{' ...' if len(bad) > 10 else ''} (values {v[bad[:5]].tolist()}); "
                "drop or fix those rows before fitting")
    keys = list(out.values())[:-1] if len(out) > 1 else list(out.values())
    n = len(np.unique(np.stack(keys, axis=1), axis=0))
    if n <= n_params:
        total = next(iter(lengths.values()))
        raise ValueError(f"{n} distinct points{f' (of {total} rows)' if total != n else ''} cannot determine "
                         f"{n_params} parameters; need at least {n_params + 1} distinct runs")
    return out


def chinchilla_objective(law: ChinchillaLaw, N, D, loss, delta: float = DELTA, weights=None) -> float:
    """Approach 3's objective at `law` in numpy float64 (the sum over points, weighted)."""
    a, b, e, alpha, beta = law.theta
    lN, lD = np.log(np.asarray(N, float)), np.log(np.asarray(D, float))
    pred = np.logaddexp(np.logaddexp(a - alpha * lN, b - beta * lD), e)
    h = huber(pred - np.log(np.asarray(loss, float)), delta)
    return float(np.sum(h if weights is None else np.asarray(weights, float) * h))


@dataclass(frozen=True)
class FitResult:
    """Best of a multi-start robust fit."""

    law: ChinchillaLaw | KaplanLaw | OffsetPowerLaw
    theta: np.ndarray
    """[P] best parameters in the fit's own parameterisation."""
    objective: float
    """Best objective (sum of Huber terms)."""
    n_points: int
    n_starts: int
    n_converged: int
    """Starts that met a stopping tolerance (others hit max_iter or a stuck line search)."""
    minima: np.ndarray = field(repr=False)
    """[K, P] distinct local minima, best first (warm starts for the bootstrap)."""
    minima_objective: np.ndarray = field(repr=False)
    """[K] their objectives."""
    basin_starts: np.ndarray = field(repr=False)
    """[M, P] starts whose runs reached the best objective (within 1e-6 relative), spread
    out by farthest-point order: warm starts that cross the landscape like the grid did."""

    def summary(self) -> str:
        return (f"{self.law}\n  objective {self.objective:.6e} over {self.n_points} points; "
                f"{self.n_converged}/{self.n_starts} starts converged; "
                f"{len(self.minima)} distinct minima kept")


def distinct_minima(res: BatchResult, predict, k: int = 8, tol: float = 1e-3):
    """Up to k distinct finite solutions, best first.

    predict(theta [P]) -> log-loss predictions [n]; two solutions are the same minimum when
    their predictions differ by <= tol everywhere (0.1% of loss), however far apart their
    parameters (E -> 0 makes e = log E drift without changing the fit).
    """
    order = np.argsort(np.where(np.isfinite(res.value), res.value, np.inf))
    kept: list[int] = []
    preds: list[np.ndarray] = []
    for i in order[: 50 * k]:
        if not np.isfinite(res.value[i]) or len(kept) == k:
            break
        with np.errstate(all="ignore"):
            p = predict(res.theta[i])
        if not np.all(np.isfinite(p)):
            continue
        if all(np.max(np.abs(p - q)) > tol for q in preds):
            kept.append(i)
            preds.append(p)
    return res.theta[kept], res.value[kept]


def farthest_point_order(x: np.ndarray, k: int) -> np.ndarray:
    """Indices of up to k rows of x [M, P]: row 0, then each the farthest from those chosen."""
    if len(x) == 0:
        return np.zeros(0, dtype=int)
    chosen = [0]
    dist = np.linalg.norm(x - x[0], axis=1)
    while len(chosen) < min(k, len(x)):
        i = int(np.argmax(dist))
        if dist[i] == 0:
            break
        chosen.append(i)
        dist = np.minimum(dist, np.linalg.norm(x - x[i], axis=1))
    return np.array(chosen)


def best_fit(res: BatchResult, starts: np.ndarray, law, predict, n_points: int) -> FitResult:
    minima, values = distinct_minima(res, predict)
    if len(minima) == 0:
        raise ValueError("no start reached a finite objective; check the data's scale and units")
    in_basin = np.flatnonzero(res.value <= values[0] * (1 + 1e-6))
    basin = starts[in_basin[farthest_point_order(starts[in_basin], 64)]]
    return FitResult(law=law(minima[0]), theta=minima[0], objective=float(values[0]),
                     n_points=n_points, n_starts=len(res.value),
                     n_converged=int(res.converged.sum()), minima=minima, minima_objective=values,
                     basin_starts=basin)


def fit_chinchilla(N, D, loss, *, delta: float = DELTA, starts: np.ndarray | None = None,
                   weights=None, opts: LBFGSOptions = LBFGSOptions(), constraints=None,
                   memo: dict | None = None) -> FitResult:
    """Approach 3: fit L = E + A/N^alpha + B/D^beta from every start (default: the 4,500 grid).

    N: [n] parameters; D: [n] tokens; loss: [n] nats/token; weights: optional [n].
    constraints: a `constraints.FitConstraints` (fixed E, alpha = beta, loss space; its delta
    replaces `delta`), or None for the published objective.
    memo: a dict the caller keeps across fits (e.g. one report's): a fit of exactly the same points,
    weights, starts, objective and options is returned from it instead of being run again.
    """
    objective, data_of, apply = chinchilla_objective_for(constraints, delta)
    cons = constraints
    cols = check_points(5 if cons is None else cons.n_free(), N=N, D=D, loss=loss)
    data = data_of(cols["N"], cols["D"], cols["loss"])
    starts = chinchilla_grid() if starts is None else np.asarray(starts, float).reshape(-1, 5)
    starts = np.unique(apply(starts), axis=0) if cons is not None else starts
    w = np.ones(len(cols["N"])) if weights is None else np.asarray(weights, float)
    if w.shape != cols["N"].shape or not np.all(np.isfinite(w) & (w >= 0)) or w.sum() <= 0:
        raise ValueError(f"weights must be {len(cols['N'])} finite values >= 0, not all zero; "
                         f"got shape {w.shape}")
    key = memo_key(objective, opts, constraints, starts, w, *data) if memo is not None else None
    if key is not None and key in memo:
        return memo[key]
    res = minimize_batch(objective, starts, w, data, opts)
    law = lambda t: ChinchillaLaw.from_log(*apply(t))
    fit = best_fit(res, starts, law, lambda t: np.log(law(t).loss(cols["N"], cols["D"])), len(cols["N"]))
    if key is not None:
        memo[key] = fit
    return fit


def memo_key(objective, opts: LBFGSOptions, constraints, *arrays) -> tuple:
    """A fit's identity for a memo: its objective, options, constraints and the exact bytes (and
    shapes) of its starts, weights and data."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(np.asarray(a, dtype=np.float64))
        h.update(repr(a.shape).encode())
        h.update(a.tobytes())
    return objective.__name__, opts, repr(constraints), h.hexdigest()


def chinchilla_objective_for(constraints, delta: float = DELTA):
    """(objective, data(N, D, loss) -> tuple, apply(theta)) for minimize_batch under constraints
    (None or the default constraints: the published objective, unchanged)."""
    if constraints is None or constraints.default and delta == constraints.delta:
        return (jax_chinchilla_objective,
                lambda N, D, L: (np.log(N), np.log(D), np.log(L), np.float64(delta)), lambda t: np.asarray(t))
    return (jax_constrained_objective,
            lambda N, D, L: (np.log(N), np.log(D), np.log(L), np.float64(constraints.delta), *constraints.flags()),
            constraints.apply)


def fit_kaplan(N, D, loss, *, delta: float = DELTA, starts: np.ndarray | None = None,
               opts: LBFGSOptions = LBFGSOptions()) -> FitResult:
    """Kaplan's L(N, D) = [(N_c/N)^(alpha_N/alpha_D) + D_c/D]^alpha_D, Huber on log loss."""
    cols = check_points(4, N=N, D=D, loss=loss)
    data = (np.log(cols["N"]), np.log(cols["D"]), np.log(cols["loss"]), np.float64(delta))
    starts = kaplan_grid() if starts is None else np.asarray(starts, float).reshape(-1, 4)
    res = minimize_batch(jax_kaplan_objective, starts, np.ones(len(cols["N"])), data, opts)
    law = lambda t: KaplanLaw(N_c=float(np.exp(t[0])), D_c=float(np.exp(t[1])),
                              alpha_N=float(t[2]), alpha_D=float(t[3]))
    return best_fit(res, starts, law, lambda t: np.log(law(t).loss(cols["N"], cols["D"])), len(cols["N"]))


def fit_offset_power_law(C, loss, *, delta: float = DELTA,
                         opts: LBFGSOptions = LBFGSOptions()) -> FitResult:
    """L(C) = E + K C^-gamma, Huber on log loss; log C is centred for conditioning.

    theta is (k, gamma, e) with K = exp(k + gamma * mean(log C)), E = exp(e).
    """
    cols = check_points(3, C=C, loss=loss)
    lC = np.log(cols["C"])
    ref = float(lC.mean())
    data = (lC - ref, np.log(cols["loss"]), np.float64(delta))
    starts = offset_grid()
    res = minimize_batch(jax_offset_objective, starts, np.ones(len(lC)), data, opts)
    law = lambda t: OffsetPowerLaw(E=float(np.exp(t[2])), K=float(np.exp(t[0] + t[1] * ref)),
                                   gamma=float(t[1]))
    return best_fit(res, starts, law, lambda t: np.log(law(t).loss(cols["C"])), len(lC))


def fit_power_law(x, y, weights=None) -> PowerLaw:
    """y = G x^a by (weighted) least squares of log y on log x, as Chinchilla's N_opt(C)."""
    cols = check_points(1, x=x, y=y)
    lx, ly = np.log(cols["x"]), np.log(cols["y"])
    w = np.ones_like(lx) if weights is None else np.asarray(weights, float)
    if np.ptp(lx[w > 0]) == 0:
        raise ValueError("all x are equal; a power law needs at least two distinct budgets")
    a, log_g = np.polyfit(lx, ly, 1, w=np.sqrt(w))
    return PowerLaw(G=float(np.exp(log_g)), a=float(a))
