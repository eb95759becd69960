"""The laws the walk-forward chooses between, each fitted the same way on any training table.

A `Candidate` names a law and its objective:
- Approach 3, L(N, D) = E + A/N^alpha + B/D^beta, by the grid fitter (L-BFGS from WALK_GRID's 32
  starts, every delta in one batched call: a walk-forward refits every candidate once per split)
  or by VPNLS, each with Huber delta 1e-3, 1e-2, 1e-1 or least squares (frontier.LS_DELTA), all
  on log loss. It forecasts optimal losses L(N_opt(C), D_opt(C)) and, for per-run tables, every
  run's L(N, D). Not for minima tables (identify.py: points along one curve).
- The frontier law L_opt(C) = E + K C^-gamma (frontier.py) by least squares (the naive
  baseline) or Huber delta 1e-3 (this is also Approach 2's loss forecast: the offset law
  through its parabola minima). It forecasts optimal losses only.

`fit_candidate` returns a `Model`: the law, its identifiability reasons (empty when identified)
and predictions with intervals. The intervals are linearised (delta method) in log space: the
Jacobian J of the training log-predictions in the law's parameters, residual variance
s^2 = sum r^2 / (n - P), parameter covariance s^2 (J^T J)^+; a forecast's log-variance is
g^T cov g + s^2 / m (g: its own gradient; m: 1 for a run, the points in the observed parabola
for an optimum), and the interval uses Student's t with n - P degrees of freedom. Cheap enough
to refit every candidate at every split; the report's bootstrap intervals come from the full fits.
A linearised interval assumes the law is right; `Model.scale` and `Model.run_scale` (1 when
fitted) widen it by the walk-forward's own out-of-sample errors (calibrate.py).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from scipy import stats

from lm.scaling.constraints import FitConstraints
from lm.scaling.frontier import LS_DELTA, describe_delta, fit_frontier
from lm.scaling.identify import a3_reasons, frontier_reasons
from lm.scaling.laws import ChinchillaLaw
from lm.scaling.optimize import minimize_batch
from lm.scaling.vpnls import fit_vpnls

WALK_GRID = np.array(list(itertools.product([2.0, 10.0], [2.0, 10.0], [-1.0, 0.5], [0.25, 0.75], [0.25, 0.75])),
                     dtype=np.float64)
"""[32, 5] starts (a, b, e, alpha, beta) for the walk-forward's grid fits: a corner of each
half of Chinchilla's grid ranges (a, b in 0-25, e in -1-1, exponents 0-2 cover far more)."""
DELTAS = (1e-3, 1e-2, 1e-1, LS_DELTA)


@dataclass(frozen=True)
class Candidate:
    """A law and its objective: kind "a3" (method "grid" | "vpnls") or "frontier"; Huber delta."""

    kind: str
    delta: float
    method: str = ""

    @property
    def name(self) -> str:
        if self.kind == "frontier":
            return f"frontier ({describe_delta(self.delta)})"
        return f"Approach 3 {self.method} ({describe_delta(self.delta)})"


NAIVE = Candidate("frontier", LS_DELTA)
"""The naive baseline: the frontier law by plain least squares on log loss."""
CANDIDATES = tuple([Candidate("a3", d, m) for m in ("grid", "vpnls") for d in DELTAS]
                   + [NAIVE, Candidate("frontier", 1e-3)])


@dataclass(frozen=True)
class Model:
    """A candidate fitted on one training table."""

    candidate: Candidate
    law: object
    """ChinchillaLaw (a3) or frontier.Frontier."""
    reasons: tuple[str, ...]
    """Why the fit is not identified (empty: identified)."""
    cov: np.ndarray
    """[P, P] linearised covariance of the parameters (log space)."""
    s2: float
    dof: int
    scale: float = 1.0
    """Factor (>= 1 once calibrated) on the optimum intervals' half-width in log space (calibrate.py)."""
    run_scale: float = 1.0
    """The same for the run intervals."""

    @property
    def identified(self) -> bool:
        return not self.reasons

    def quantile(self, level: float) -> float:
        """Student's t quantile of a two-sided `level` interval with the fit's dof (>= 1)."""
        return float(stats.t.ppf((1 + level) / 2, max(self.dof, 1)))

    def _interval(self, logpred, grads, m, level, scale):
        var = np.einsum("ip,pq,iq->i", grads, self.cov, grads) + self.s2 / np.asarray(m, float)
        half = scale * self.quantile(level) * np.sqrt(np.maximum(var, 0))
        return np.exp(logpred), np.exp(logpred - half), np.exp(logpred + half)

    def optimum(self, C, m=1, level: float = 0.9):
        """At budgets C [k]: (loss, lo, hi, N, D) of the compute-optimal model (N, D nan if unknown)."""
        C = np.atleast_1d(np.asarray(C, float))
        if self.candidate.kind == "frontier":
            fr = self.law
            theta = fr.theta
            f = lambda t: np.logaddexp(t[0], t[1] - t[2] * np.log(C))
            n, d = fr.allocation(C)
        else:
            theta = self.law.theta
            f = lambda t: np.log(ChinchillaLaw.from_log(*t).optimal_loss(C))
            n, d = self.law.optimal(C)
        return (*self._interval(f(theta), _grad(f, theta), m, level, self.scale), np.asarray(n, float), np.asarray(d, float))

    def runs(self, N, D, level: float = 0.9):
        """At runs (N [k], D [k]): (loss, lo, hi); None for a law of C alone."""
        if self.candidate.kind == "frontier":
            return None
        lN, lD = np.log(np.asarray(N, float)), np.log(np.asarray(D, float))
        f = lambda t: _a3_log(t, lN, lD)
        return self._interval(f(self.law.theta), _grad(f, self.law.theta), 1, level, self.run_scale)


def _a3_log(t, lN, lD):
    a, b, e, al, be = t
    return np.logaddexp(np.logaddexp(a - al * lN, b - be * lD), e)


def _grad(f, theta, eps: float = 1e-6) -> np.ndarray:
    """[k, P] central-difference gradient of f(theta) -> [k]."""
    cols = []
    for j in range(len(theta)):
        h = np.zeros_like(theta)
        h[j] = eps * max(1.0, abs(theta[j]))
        with np.errstate(all="ignore"):
            cols.append((f(theta + h) - f(theta - h)) / (2 * h[j]))
    return np.stack(cols, axis=-1)


def _linearised(f, theta, logL):
    """(cov [P, P], s2, dof) of a least-squares-like fit with log-prediction f(theta) [n] of log L [n]."""
    J = _grad(f, theta)
    r = f(theta) - logL
    dof = len(logL) - len(theta)
    s2 = float(np.sum(r * r) / max(dof, 1))
    if not np.all(np.isfinite(J)):
        return np.full((len(theta), len(theta)), np.nan), s2, dof
    return s2 * np.linalg.pinv(J.T @ J), s2, dof


def jax_walk_objective(theta, w, lN, lD, lL):
    """Approach 3's Huber objective with its threshold carried in theta: theta [6] = (log A,
    log B, log E, alpha, beta, log delta); the last coordinate gets no gradient, so it never
    moves and one batched L-BFGS call fits every delta at once."""
    a, b, e, alpha, beta, log_delta = theta
    delta = jnp.exp(jax.lax.stop_gradient(log_delta))
    r = jnp.logaddexp(jnp.logaddexp(a - alpha * lN, b - beta * lD), e) - lL
    ar = jnp.abs(r)
    return jnp.sum(w * jnp.where(ar <= delta, 0.5 * r * r, delta * (ar - 0.5 * delta)))


def padded(cols, pad_to: int | None):
    """Columns [n] and weights [n], padded to pad_to points with zero-weight copies of the last
    (so every split of a table shares one compiled shape)."""
    n = len(cols[0])
    k = max(0, (pad_to or n) - n)
    w = np.concatenate([np.ones(n), np.zeros(k)])
    return [np.concatenate([c, np.full(k, c[-1])]) for c in cols], w


def _grid_laws(deltas, N, D, L, pad_to):
    """{delta: ChinchillaLaw}: WALK_GRID fits for every delta in one minimize_batch call."""
    (Np, Dp, Lp), w = padded([N, D, L], pad_to)
    starts = np.concatenate([np.column_stack([WALK_GRID, np.full(len(WALK_GRID), np.log(d))]) for d in deltas])
    res = minimize_batch(jax_walk_objective, starts, w, (np.log(Np), np.log(Dp), np.log(Lp)))
    value = np.where(np.isfinite(res.value), res.value, np.inf).reshape(len(deltas), len(WALK_GRID))
    theta = res.theta.reshape(len(deltas), len(WALK_GRID), 6)
    out = {}
    for i, d in enumerate(deltas):
        j = int(np.argmin(value[i]))
        if np.isfinite(value[i, j]):
            out[d] = ChinchillaLaw.from_log(*theta[i, j, :5])
    return out


def _a3_model(cand, law, N, D, L, budgets) -> Model:
    lN, lD = np.log(N), np.log(D)
    cov, s2, dof = _linearised(lambda t: _a3_log(t, lN, lD), law.theta, np.log(L))
    return Model(cand, law, tuple(a3_reasons(law, N, D, L, budgets)), cov, s2, dof)


def _frontier_model(cand, minima) -> Model:
    fr = fit_frontier(minima, delta=cand.delta, n_bootstrap=0)
    C = fr.minima["budget"].to_numpy(float)
    f = lambda t: np.logaddexp(t[0], t[1] - t[2] * np.log(C))
    cov, s2, dof = _linearised(f, fr.theta, np.log(fr.minima["loss"].to_numpy(float)))
    return Model(cand, fr, tuple(frontier_reasons(fr)), cov, s2, dof)


NO_A3_ON_MINIMA = ("Approach 3 needs a per-run table: a minima table's points lie along one curve, which "
                   "cannot separate E, A/N^alpha and B/D^beta")


def fit_candidates(cands, runs: pd.DataFrame | None, minima: pd.DataFrame, pad_to: int | None = None) -> dict:
    """Fit every candidate on one training table: runs (N, D, loss, budget; None for a minima
    table) and its minima (budget, loss, N, D). Returns {name: Model, or str: why it could not
    run}; no exception escapes. pad_to: pad the runs to this many points (one compiled shape)."""
    out: dict[str, Model | str] = {}
    a3 = [c for c in cands if c.kind == "a3"]
    if a3 and runs is None:
        out.update({c.name: NO_A3_ON_MINIMA for c in a3})
        a3 = []
    if a3:
        N, D, L = (runs[c].to_numpy(float) for c in ("N", "D", "loss"))
        grid = [c for c in a3 if c.method == "grid"]
        try:
            laws = _grid_laws(sorted({c.delta for c in grid}), N, D, L, pad_to) if grid else {}
        except Exception as err:  # noqa: BLE001 - reported per candidate
            laws = {}
            out.update({c.name: f"{type(err).__name__}: {err}" for c in grid})
        for c in a3:
            try:
                if c.method == "grid":
                    law = laws[c.delta]
                else:
                    (Np, Dp, Lp), w = padded([N, D, L], pad_to)
                    law = fit_vpnls(Np, Dp, Lp, weights=w, constraints=FitConstraints(delta=c.delta)).law
                out[c.name] = _a3_model(c, law, N, D, L, runs["budget"].to_numpy())
            except Exception as err:  # noqa: BLE001 - reported per candidate
                out.setdefault(c.name, f"{type(err).__name__}: {err}")
    for c in cands:
        if c.kind == "frontier":
            try:
                out[c.name] = _frontier_model(c, minima)
            except Exception as err:  # noqa: BLE001 - reported per candidate
                out[c.name] = f"{type(err).__name__}: {err}"
    return out
