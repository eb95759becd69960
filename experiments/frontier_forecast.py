"""A stage's preregistered forecast from the frontier law through the earlier budgets' minima.

L_opt(C) = E + K C^-gamma, fitted by least squares to the observed parabola minima of the budgets
before the stage (3 parameters: exact through 3 minima, least squares through more), and
N_opt(C) = G C^a by a line in log-log through the same minima's N. The fit is variable
projection: for each gamma on a fine log grid the law is linear in (E, K), so every gamma's best
(E, K) is closed form and the gamma of least residual wins; no starts, no optimiser, and a batch of
bootstrap draws [R, B] is fitted in one vectorised pass. Where the data know their exact entropy
floor, E is that floor (`floor`): the excess-loss law, a least-squares line through
log(L_opt - floor) against log C (2 parameters: exact through 2 minima).

The interval (`LEVEL`, experiments.forecasts) covers where the stage's minimum will be observed:
1. the runs' noise: every run's loss moved by a normal draw of the pooled parabola residual scale,
   the budgets' minima re-observed, each moved by the shift its runs share (forecasts.COMMON_NOISE,
   forecasts.minima_noise_draws), and the law refitted, R times;
2. the noise of the minimum to be observed: each draw times an independent draw of how far one
   re-observed minimum (the last earlier budget's) moves in that bootstrap;
3. the law's own error beyond its data: the frontier is walked forward over the earlier budgets
   (fit on the first j >= 3, forecast each later one), each forecast's error standardized by its
   own bootstrap spread, and the interval widened (never narrowed) by lm.scaling.calibrate's
   interval_scale of those errors (shrunk toward 1 while there are few).
The interval is moved onto its point (forecasts.centred_interval).

Why this law (E fitted): refitted as of each stage on four finished synthetic sweeps it forecast stages 4-6
with mean |error| 1.5 % against Approach 3's 3.2 % (Approach 3 under-predicted all 12) and the
walk-forward choice's 2.6 % (three sweeps), and it beat Approach 3 at every text stage it could
forecast (BENCHMARKS.md, "2026-12-07: the frontier law preregisters"). With the floor as E it did
better still on every finished synthetic sweep (experiments.forecasts, "Why this rule").
"""

from __future__ import annotations

import numpy as np

GAMMAS = np.geomspace(0.02, 3.0, 481)
"""The exponents tried (ratio ~1.0105 between neighbours): a law that needs gamma below 0.02 (minima
falling at an accelerating or steady rate in log C) is fitted as nearly linear in log C."""
MIN_BUDGETS = 3


def _linear_fit(log_c, L, gammas):
    """(E, K, rss) [R, G] of the least-squares (E, K) at each gamma [G] for losses L [R, B]."""
    u = np.exp(-gammas[:, None] * (log_c - log_c[0])[None])            # [G, B]
    u_c = u - u.mean(axis=1, keepdims=True)
    L_c = L - L.mean(axis=1, keepdims=True)
    K = (L_c @ u_c.T) / (u_c ** 2).sum(axis=1)                         # [R, G]
    E = L.mean(axis=1, keepdims=True) - K * u.mean(axis=1)[None]
    rss = ((L[:, None, :] - E[..., None] - K[..., None] * u[None]) ** 2).sum(axis=2)
    return E, K, rss


def fit_minima(log_c, losses):
    """(E, K, gamma) [R] of L = E + K exp(-gamma (log C - log_c[0])) by least squares through
    losses [R, B] (or [B]: returns floats, gamma refined between the grid's neighbours) at log
    budgets log_c [B]."""
    from scipy.optimize import minimize_scalar

    log_c = np.asarray(log_c, float)
    L = np.atleast_2d(np.asarray(losses, float))                      # [R, B]
    E, K, rss = _linear_fit(log_c, L, GAMMAS)
    best = np.argmin(rss, axis=1)
    rows = np.arange(len(L))
    if np.ndim(losses) != 1:
        return E[rows, best], K[rows, best], GAMMAS[best]
    lo, hi = GAMMAS[max(best[0] - 1, 0)], GAMMAS[min(best[0] + 1, len(GAMMAS) - 1)]
    res = minimize_scalar(lambda g: float(_linear_fit(log_c, L, np.array([g]))[2][0, 0]), bounds=(lo, hi),
                          method="bounded", options={"xatol": 1e-9})
    g = float(res.x) if res.fun <= rss[0, best[0]] else float(GAMMAS[best[0]])
    e, k, _ = _linear_fit(log_c, L, np.array([g]))
    return float(e[0, 0]), float(k[0, 0]), g


def forecast_minima(log_c, losses, log_target, floor: float | None = None):
    """L_opt at log_target from the law fitted through losses [R, B] (or [B]) at log_c [B]: E free,
    or E = `floor` (forecast_excess)."""
    if floor is not None:
        return forecast_excess(log_c, losses, log_target, floor)
    E, K, gamma = fit_minima(log_c, losses)
    return E + K * np.exp(-gamma * (log_target - np.asarray(log_c, float)[0]))


def fit_excess(log_c, losses, floor: float):
    """(K, gamma) [R] of L = floor + K exp(-gamma (log C - log_c[0])) by least squares in
    log(losses - floor) [R, B] (or [B]: floats) against log_c [B] (2 parameters: exact through 2
    minima). A row with a minimum at or below the floor has no such law: nan."""
    log_c = np.asarray(log_c, float)
    L = np.atleast_2d(np.asarray(losses, float))                      # [R, B]
    with np.errstate(all="ignore"):
        y = np.log(L - floor)                                          # [R, B]
    x = log_c - log_c[0]
    slope = (y - y.mean(axis=1, keepdims=True)) @ (x - x.mean()) / ((x - x.mean()) @ (x - x.mean()))   # [R]
    K, gamma = np.exp(y.mean(axis=1) - slope * x.mean()), -slope
    bad = ~np.all(np.isfinite(y), axis=1)
    K[bad], gamma[bad] = np.nan, np.nan
    return (float(K[0]), float(gamma[0])) if np.ndim(losses) == 1 else (K, gamma)


def forecast_excess(log_c, losses, log_target, floor: float):
    """L_opt at log_target from L_opt = floor + K C^-gamma fitted through losses [R, B] (or [B])
    at log_c [B] (fit_excess; nan for a row with a minimum at or below the floor)."""
    K, gamma = fit_excess(log_c, losses, floor)
    return floor + K * np.exp(-gamma * (log_target - np.asarray(log_c, float)[0]))


def min_budgets(floor: float | None) -> int:
    """Minima the law needs: 3 with E free, 2 with E = the floor."""
    return MIN_BUDGETS if floor is None else 2


def walk_forward_z(log_c, points, draws, noise, floor: float | None = None) -> np.ndarray:
    """Standardized errors of the law walked forward over the budgets: fit on the first j >= 3
    (2 with a floor) minima points [B], forecast each later one; z = log(observed / forecast) / sd,
    with sd the log spread of the same forecast from the bootstrap draws [R, B] times one minimum's
    noise [R] (log)."""
    z = []
    for j in range(min_budgets(floor), len(points)):
        for m in range(j, len(points)):
            pred = float(forecast_minima(log_c[:j], points[:j], log_c[m], floor))
            with np.errstate(all="ignore"):
                sd = np.nanstd(np.log(forecast_minima(log_c[:j], draws[:, :j], log_c[m], floor)) + noise)
            if pred > 0 and sd > 0:
                z.append(np.log(points[m] / pred) / sd)
    return np.array(z, float)


def log_interval(point: float, samples, level: float, scale: float = 1.0) -> tuple[float, float]:
    """The `level` interval of positive samples [R] about their median in log space, widened by
    `scale` and moved onto `point` (nan, nan with fewer than 2 finite samples)."""
    with np.errstate(all="ignore"):
        logs = np.log(np.asarray(samples, float))
    logs = logs[np.isfinite(logs)]
    if len(logs) < 2 or not point > 0:
        return float("nan"), float("nan")
    lo, hi = scale * np.quantile(logs - np.median(logs), [(1 - level) / 2, (1 + level) / 2])
    return float(point * np.exp(lo)), float(point * np.exp(hi))


def frontier_forecast(budgets, points, draws, budget: float, *, level: float, seed: int = 0,
                      noise_scale: float = 1.0, floor: float | None = None) -> dict:
    """The forecast of `budget` from the earlier budgets [B] (B >= 3; >= 2 with a floor), their
    observed minima points [B, 2] (loss, N) and the runs'-noise bootstrap of those minima draws
    [R, B, 2] (R may be 0: no interval). noise_scale: the target minimum's own noise relative to the
    last earlier one's (sqrt of their seeds' ratio). floor: the data's known entropy floor, taken as
    E (the excess-loss law, 2 parameters); None: E is fitted. Returns loss, lo, hi, n_opt, n_lo,
    n_hi, scale (the walk-forward widening), E, gamma."""
    from lm.scaling.calibrate import interval_scale

    budgets, points, draws = np.asarray(budgets, float), np.asarray(points, float), np.asarray(draws, float)
    if len(budgets) < min_budgets(floor):
        raise ValueError(f"the frontier law needs the minima of >= {min_budgets(floor)} earlier budgets; "
                         f"got {len(budgets)}")
    log_c, target = np.log(budgets), float(np.log(budget))
    if floor is None:
        E, K, gamma = fit_minima(log_c, points[:, 0])
    else:
        if np.any(points[:, 0] <= floor):
            raise ValueError(f"a minimum at or below the entropy floor {floor:.4g} has no excess-loss law")
        (K, gamma), E = fit_excess(log_c, points[:, 0], floor), floor
    loss = float(E + K * np.exp(-gamma * (target - log_c[0])))
    n_fit = np.polyfit(log_c, np.log(points[:, 1]), 1)
    n_opt = float(np.exp(np.polyval(n_fit, target)))
    out = dict(loss=loss, lo=float("nan"), hi=float("nan"), n_opt=n_opt, n_lo=float("nan"), n_hi=float("nan"),
               scale=1.0, E=float(E), gamma=float(gamma))
    if len(draws) < 2:
        return out
    rng = np.random.default_rng(seed)
    noise = rng.permutation(np.log(draws[:, -1, 0] / np.median(draws[:, -1, 0])))   # [R] one minimum's own noise
    with np.errstate(all="ignore"):
        samples = forecast_minima(log_c, draws[:, :, 0], target, floor) * np.exp(noise_scale * noise)     # [R]
        n_samples = np.array([np.exp(np.polyval(np.polyfit(log_c, np.log(d[:, 1]), 1), target)) for d in draws])
    z = walk_forward_z(log_c, points[:, 0], draws[:, :, 0], noise, floor)
    scale = max(1.0, interval_scale(z)) if len(z) else 1.0
    out.update(scale=scale)
    out["lo"], out["hi"] = log_interval(loss, samples, level, scale)
    out["n_lo"], out["n_hi"] = log_interval(n_opt, n_samples, level)
    return out
