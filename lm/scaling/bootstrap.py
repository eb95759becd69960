"""Bootstrap intervals for the Approach 3 fit (and the helpers other approaches share).

Resampling n points with replacement is the same as weighting each point by its multiplicity
(a multinomial count), so a resample's refit is the weighted objective of fit.py. All
resamples x warm starts run together in `optimize.minimize_batch`.

Warm starts: each resample is refitted not from all 4,500 grid starts but from `n_starts`
(default 6): the full-data optimum plus grid starts whose full-data runs reached that
optimum, chosen spread out (fit.FitResult.basin_starts). The Huber objective with
delta = 1e-3 is nearly piecewise linear and has many shallow local minima near the optimum;
starting from the optimum alone lands more than half of Chinchilla's resamples in a slightly
worse one, while starts that cross the landscape the way the grid did find the resample's
full-grid optimum (checked to 1e-9 relative in tests/scaling/test_scaling_bootstrap.py). On
Epoch's 240 points, 300 resamples: the best of 6 starts is within 5e-11 of the best of 16 for
every resample (the best of 4: 1 resample off by 4e-8; of 2: 6 off by up to 3e-4); on lm-fit's
1,000 resamples (seed 0) 6 starts reach 8 starts' optimum to 3.3e-10 with identical intervals,
for 26 % fewer L-BFGS steps.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from lm.scaling.fit import (DELTA, FitResult, check_points, chinchilla_objective_for, fit_chinchilla,
                            fit_power_law, jax_offset_objective)
from lm.scaling.laws import ChinchillaLaw, FlopsPerToken, OffsetPowerLaw, PowerLaw, optimal_allocation
from lm.scaling.optimize import LBFGSOptions, minimize_batch


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its bootstrap standard error and percentile interval."""

    value: float
    """From the full-data fit."""
    se: float
    """Standard deviation over resamples (ddof=1)."""
    lo: float
    hi: float
    level: float = 0.95

    def __str__(self) -> str:
        return f"{_fmt(self.value)} ± {_fmt(self.se)} [{_fmt(self.lo)}, {_fmt(self.hi)}]"


def _fmt(x: float) -> str:
    return f"{x:.4g}" if 1e-3 <= abs(x) < 1e5 or x == 0 else f"{x:.3e}"


def estimate(value: float, samples, level: float = 0.95) -> Estimate:
    """Estimate from bootstrap samples [R] (non-finite samples ignored)."""
    s = np.asarray(samples, float)
    s = s[np.isfinite(s)]
    if len(s) < 2:
        return Estimate(float(value), float("nan"), float("nan"), float("nan"), level)
    q = 100 * (1 - level) / 2
    lo, hi = np.percentile(s, [q, 100 - q])
    return Estimate(float(value), float(np.std(s, ddof=1)), float(lo), float(hi), level)


FULL_BOOTSTRAP_ROWS = 100
"""Tables of at least this many rows get 1,000 resamples by default (sized_resamples)."""


def sized_resamples(n_rows: int, requested: int | None = None) -> int:
    """Bootstrap resamples for a table of n_rows: `requested` when given; else 1,000 from
    FULL_BOOTSTRAP_ROWS rows up (Epoch's 240 points, published intervals) and 10 per row, at
    least 200, below: a 9-run sweep's intervals from 200 resamples (their 2.5 % tail is 5
    resamples) cost a fifth of 1,000's L-BFGS refits, and on so few rows they are wide anyway."""
    if requested is not None:
        return int(requested)
    return 1000 if n_rows >= FULL_BOOTSTRAP_ROWS else max(200, 10 * int(n_rows))


def resample_weights(n: int, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """[R, n] multiplicities of n points in R bootstrap resamples (each row sums to n)."""
    return rng.multinomial(n, np.full(n, 1.0 / n), size=n_resamples).astype(np.float64)


def allocation_samples(E, A, B, alpha, beta, budgets, flops_per_token: FlopsPerToken | None):
    """Compute-optimal N, D for each law sample: arrays [R] -> (N [R, nb], D [R, nb])."""
    C = np.asarray(budgets, float)[None, :]
    if flops_per_token is None:  # closed form, vectorised
        G = (alpha * A / (beta * B)) ** (1 / (alpha + beta))
        a, b = beta / (alpha + beta), alpha / (alpha + beta)
        c6 = C / 6.0
        return G[:, None] * c6 ** a[:, None], c6 ** b[:, None] / G[:, None]
    n = np.empty((len(E), C.shape[1]))
    d = np.empty_like(n)
    for r in range(len(E)):
        law = ChinchillaLaw(E[r], A[r], B[r], alpha[r], beta[r])
        n[r], d[r] = optimal_allocation(law, C[0], flops_per_token)
    return n, d


@dataclass(frozen=True)
class ChinchillaBootstrap:
    """Bootstrap of the Approach 3 fit: law samples, derived quantities and intervals."""

    law: ChinchillaLaw
    """The full-data fit."""
    samples: np.ndarray = field(repr=False)
    """[R, 5] (E, A, B, alpha, beta) per resample."""
    objective: np.ndarray = field(repr=False)
    """[R] best objective per resample."""
    budgets: tuple[float, ...]
    """FLOP budgets at which allocations are summarised."""
    n_opt: np.ndarray = field(repr=False)
    """[R, len(budgets)] compute-optimal parameters per resample."""
    d_opt: np.ndarray = field(repr=False)
    """[R, len(budgets)] compute-optimal tokens per resample."""
    estimates: dict[str, Estimate]
    """E, A, B, alpha, beta, a, b, G, and N_opt@C, D_opt@C, D/N@C for each budget C."""

    def summary(self) -> str:
        lines = [f"Approach 3 bootstrap ({len(self.samples)} resamples; "
                 f"estimate ± SE [{100 * next(iter(self.estimates.values())).level:.0f}% interval]):"]
        lines += [f"  {k:>16} {v}" for k, v in self.estimates.items()]
        return "\n".join(lines)


def bootstrap_chinchilla(
    N, D, loss, fit: FitResult | None = None, *, n_resamples: int = 1000, seed: int = 0,
    n_starts: int = 6, budgets=(5.76e23,), flops_per_token: FlopsPerToken | None = None,
    level: float = 0.95, delta: float = DELTA, opts: LBFGSOptions = LBFGSOptions(), constraints=None,
) -> ChinchillaBootstrap:
    """Resample points with replacement, refit Approach 3, summarise every parameter.

    N, D, loss: [n] as for fit.fit_chinchilla; fit: the full-data fit (computed if None).
    Each resample is refitted from the full-data optimum and fit.basin_starts[:n_starts - 1]
    and keeps its best objective. constraints: as for fit.fit_chinchilla.
    """
    objective, data_of, apply = chinchilla_objective_for(constraints, delta)
    cols = check_points(5 if constraints is None else constraints.n_free(), N=N, D=D, loss=loss)
    if n_resamples < 2:
        raise ValueError(f"n_resamples={n_resamples}; use at least 2 (1000 for published intervals)")
    if fit is None:
        fit = fit_chinchilla(cols["N"], cols["D"], cols["loss"], delta=delta, opts=opts, constraints=constraints)
    n = len(cols["N"])
    weights = resample_weights(n, n_resamples, np.random.default_rng(seed))
    starts = np.concatenate([fit.theta[None], fit.basin_starts[: max(n_starts - 1, 0)]])
    K = len(starts)
    res = minimize_batch(objective, np.tile(starts, (n_resamples, 1)), np.repeat(weights, K, axis=0),
                         data_of(cols["N"], cols["D"], cols["loss"]), opts)
    values = res.value.reshape(n_resamples, K)
    best = np.argmin(np.where(np.isfinite(values), values, np.inf), axis=1)
    theta = apply(res.theta.reshape(n_resamples, K, 5)[np.arange(n_resamples), best])
    budgets = tuple(float(c) for c in np.atleast_1d(budgets))
    with np.errstate(all="ignore"):  # a degenerate resample (exponents ~0) overflows to inf: ignored
        est, (E, A, B, alpha, beta), n_opt, d_opt = _derived(fit.law, theta, budgets, flops_per_token, level)
    return ChinchillaBootstrap(law=fit.law, samples=np.stack([E, A, B, alpha, beta], axis=1),
                               objective=values[np.arange(n_resamples), best], budgets=budgets,
                               n_opt=n_opt, d_opt=d_opt, estimates=est)


def _derived(law: ChinchillaLaw, theta, budgets, flops_per_token, level):
    """Estimates from law samples theta [R, 5] (a, b, e, alpha, beta): (estimates, (E, A, B,
    alpha, beta) [R] each, N_opt [R, budgets], D_opt [R, budgets])."""
    a, b, e, alpha, beta = theta.T
    E, A, B = np.exp(e), np.exp(a), np.exp(b)
    n_opt, d_opt = allocation_samples(E, A, B, alpha, beta, budgets, flops_per_token)
    full_n, full_d = (np.atleast_1d(v) for v in law.optimal(np.array(budgets), flops_per_token))
    G = (alpha * A / (beta * B)) ** (1 / (alpha + beta))
    est = {name: estimate(getattr(law, name), s, level) for name, s in
           dict(E=E, A=A, B=B, alpha=alpha, beta=beta, a=beta / (alpha + beta),
                b=alpha / (alpha + beta), G=G).items()}
    for j, c in enumerate(budgets):
        est[f"N_opt@{c:.3g}"] = estimate(full_n[j], n_opt[:, j], level)
        est[f"D_opt@{c:.3g}"] = estimate(full_d[j], d_opt[:, j], level)
        est[f"D/N@{c:.3g}"] = estimate(full_d[j] / full_n[j], d_opt[:, j] / n_opt[:, j], level)
    return est, (E, A, B, alpha, beta), n_opt, d_opt


@dataclass(frozen=True)
class PowerLawFits:
    """N_opt(C) and D_opt(C) power laws with bootstrap intervals."""

    n_opt: PowerLaw
    d_opt: PowerLaw
    estimates: dict[str, Estimate]
    """a, b, G_N, G_D, and N_opt@C, D_opt@C for each budget C."""
    n_resamples: int

    def summary(self) -> str:
        e = self.estimates
        return (f"N_opt = {self.n_opt.G:.4g} C^{self.n_opt.a:.4f}, D_opt = {self.d_opt.G:.4g} C^{self.d_opt.a:.4f}; "
                f"a = {e['a']}, b = {e['b']} ({self.n_resamples} resamples)")


def power_law_fits(C, N, D, samples, budgets, level, weights=None) -> PowerLawFits:
    """Least-squares N_opt(C), D_opt(C) on points C, N, D [k] (weighted by `weights` [k] when
    given); intervals from `samples`, a list of (C, N, D) or (C, N, D, weights) arrays refitted
    per resample (one with < 2 distinct C counts as failed)."""
    n_law, d_law = fit_power_law(C, N, weights), fit_power_law(C, D, weights)
    rows = []
    for c, n, d, *w in samples:
        if len(np.unique(c)) < 2:
            rows.append([np.nan] * 4)
            continue
        nl, dl = fit_power_law(c, n, *w), fit_power_law(c, d, *w)
        rows.append([nl.a, dl.a, nl.G, dl.G])
    s = np.array(rows, float).reshape(-1, 4)
    est = {"a": estimate(n_law.a, s[:, 0], level), "b": estimate(d_law.a, s[:, 1], level),
           "G_N": estimate(n_law.G, s[:, 2], level), "G_D": estimate(d_law.G, s[:, 3], level)}
    for c in budgets:
        est[f"N_opt@{c:.3g}"] = estimate(n_law(c), s[:, 2] * c ** s[:, 0], level)
        est[f"D_opt@{c:.3g}"] = estimate(d_law(c), s[:, 3] * c ** s[:, 1], level)
    return PowerLawFits(n_law, d_law, est, len(samples))


REFIT_POINTS = 64
"""The point axis of refit_offset_power_laws' batched calls."""


def refit_offset_power_laws(C, losses, fit: FitResult, *, n_starts: int = 2, delta: float = DELTA,
                            opts: LBFGSOptions = LBFGSOptions()) -> list[OffsetPowerLaw | None]:
    """Refit L(C) = E + K C^-gamma (fit.fit_offset_power_law's objective) to each row of
    resampled losses. C: [J] budgets; losses: [R, J], nan where a row has no value; fit: the
    full-data fit at the same C. Each row is refitted from the full fit's optimum and its first
    n_starts - 1 basin starts, keeping the best. Rows go in small groups: a group's points are
    stacked and each of its problems weights only its own row's, so one batched call fits the
    group; every group's point axis is padded to REFIT_POINTS (zero weights), so all groups share
    one compiled program whatever the group's size.
    Returns [R] laws, None for a row with fewer than 4 values (3 parameters).
    """
    C, losses = np.asarray(C, float), np.asarray(losses, float)
    R, J = losses.shape
    ok = np.isfinite(losses) & (losses > 0)
    rows = np.flatnonzero(ok.sum(axis=1) >= 4)
    ref = float(np.log(C).mean())  # fit_offset_power_law's centring: theta = (k, gamma, e)
    law = fit.law
    theta = np.array([np.log(law.K) - law.gamma * ref, law.gamma, np.log(law.E)])
    starts = np.concatenate([theta[None], fit.basin_starts[: max(n_starts - 1, 0)]])  # [K, 3]
    K = len(starts)
    group = max(1, min(REFIT_POINTS // J, 32 // K))  # <= 64 points and <= 32 problems per call
    out: list[OffsetPowerLaw | None] = [None] * R
    for lo in range(0, len(rows), group):
        g = rows[lo: lo + group]
        m = len(g)
        block = np.zeros((m, m * J))
        for i, r in enumerate(g):
            block[i, i * J:(i + 1) * J] = ok[r]
        lL = np.log(np.where(ok[g], losses[g], 1.0)).ravel()
        lC = np.tile(np.log(C) - ref, m)
        pad = max(REFIT_POINTS - m * J, 0)  # zero-weight copies of the last point
        block = np.pad(block, ((0, 0), (0, pad)))
        data = (np.pad(lC, (0, pad), mode="edge"), np.pad(lL, (0, pad), mode="edge"), np.float64(delta))
        res = minimize_batch(jax_offset_objective, np.tile(starts, (m, 1)), np.repeat(block, K, axis=0), data, opts)
        values = np.where(np.isfinite(res.value), res.value, np.inf).reshape(m, K)
        best = res.theta.reshape(m, K, 3)[np.arange(m), np.argmin(values, axis=1)]
        for r, (k, gamma, e) in zip(g, best):
            out[r] = OffsetPowerLaw(E=float(np.exp(e)), K=float(np.exp(k + gamma * ref)), gamma=float(gamma))
    return out
