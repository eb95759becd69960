"""Is a fitted law identified by its data? Checks run before a fit is printed, plotted or used.

A fit fails (and is reported as "unidentified: <reason>", never as numbers) when
- its data have too few distinct values for its parameters: Approach 3 needs >= 6 distinct
  (N, D) points with >= 3 distinct N and >= 3 distinct D and >= 2 budgets; the frontier law
  >= 4 budgets; Approaches 1 and 2 >= 3 budgets (a power law through 2 points has no residual);
- an exponent is <= 0 or > MAX_EXPONENT (alpha, beta, gamma; a, b of N_opt, D_opt ∝ C^a, C^b);
- the irreducible loss E is <= 0 or below E_FLOOR of the smallest loss (an E of 1e-16 is a
  pure power law that the fit could not tell from one with an offset);
- a bootstrap interval is pinned at a bound: an end within PIN_TOL of 0 (exponents, E) or at
  or beyond it, or at MAX_EXPONENT;
- the Jacobian of the log-predictions with respect to the parameters (log A, log B, log E,
  alpha, beta; or log E, log K, gamma), columns scaled to unit length, has a condition number
  above COND_LIMIT: then some combination of the parameters moves no prediction, e.g. Approach 3
  on points along one curve (a minima table, one IsoFLOP budget).

COND_LIMIT = 1e5 catches only parameters the data cannot separate at all (a column of the
Jacobian that is a combination of the others); weakly identified cases (one budget; a minima table,
never fitted by Approach 3) are caught by the counts and value checks above, not by the condition
number (the condition numbers measured: BENCHMARKS.md, "Identifiability: condition numbers").
"""

from __future__ import annotations

import numpy as np

MAX_EXPONENT = 3.0
E_FLOOR = 1e-6
PIN_TOL = 1e-6
COND_LIMIT = 1e5


def unidentified(reasons) -> str:
    """One line: "unidentified: r1; r2"."""
    return "unidentified: " + "; ".join(reasons)


def jacobian_condition(predict, theta, eps: float = 1e-6) -> float:
    """Condition number of d predict / d theta at theta, columns scaled to unit norm.

    predict(theta [P]) -> [n] log predictions (central differences)."""
    theta = np.asarray(theta, float)
    cols = []
    for j in range(len(theta)):
        h = np.zeros_like(theta)
        h[j] = eps * max(1.0, abs(theta[j]))
        with np.errstate(all="ignore"):
            cols.append((predict(theta + h) - predict(theta - h)) / (2 * h[j]))
    J = np.stack(cols, axis=1)
    if not np.all(np.isfinite(J)):
        return float("inf")
    norms = np.linalg.norm(J, axis=0)
    if np.any(norms == 0):
        return float("inf")
    s = np.linalg.svd(J / norms, compute_uv=False)
    return float(s[0] / s[-1]) if s[-1] > 0 else float("inf")


def value_reasons(values: dict, min_loss: float | None = None) -> list[str]:
    """Exponents in (0, MAX_EXPONENT], E > 0 (and above E_FLOOR x the smallest loss)."""
    out = []
    for k in ("alpha", "beta", "gamma", "a", "b"):
        v = values.get(k)
        if v is not None and not (np.isfinite(v) and 0 < v <= MAX_EXPONENT):
            out.append(f"exponent {k} = {v:.3g} outside (0, {MAX_EXPONENT:g}]")
    E = values.get("E")
    if E is not None:
        if not (np.isfinite(E) and E > 0):
            out.append(f"E = {E:.3g} <= 0")
        elif min_loss is not None and E < E_FLOOR * min_loss:
            out.append(f"E = {E:.3g} is ~0 (below {E_FLOOR:g} x the smallest loss): no offset identified")
    return out


def interval_reasons(estimates: dict, keys=("E", "alpha", "beta", "gamma", "a", "b")) -> list[str]:
    """Bootstrap intervals of positive quantities pinned at 0 (or beyond), or exponents at MAX_EXPONENT."""
    out = []
    for k in keys:
        e = estimates.get(k)
        if e is None or not (np.isfinite(e.lo) and np.isfinite(e.hi)):
            continue
        scale = max(abs(e.value), 1.0) if k != "E" else max(abs(e.value), 1e-12)
        if e.lo <= PIN_TOL * scale:
            out.append(f"{k}'s interval [{e.lo:.3g}, {e.hi:.3g}] reaches the bound 0")
        elif k != "E" and e.hi >= MAX_EXPONENT - PIN_TOL:
            out.append(f"{k}'s interval [{e.lo:.3g}, {e.hi:.3g}] reaches the bound {MAX_EXPONENT:g}")
    return out


def count_reasons_a3(N, D, budgets) -> list[str]:
    """Approach 3 needs >= 6 distinct (N, D), >= 3 distinct N and D, >= 2 budgets."""
    N, D = np.asarray(N, float), np.asarray(D, float)
    pts = len(np.unique(np.stack([N, D], axis=1), axis=0))
    out = []
    if pts < 6:
        out.append(f"{pts} distinct (N, D) points for 5 parameters (need >= 6)")
    if len(np.unique(N)) < 3 or len(np.unique(D)) < 3:
        out.append(f"{len(np.unique(N))} distinct N and {len(np.unique(D))} distinct D (need >= 3 of each)")
    nb = len(np.unique(budgets))
    if nb < 2:
        out.append(f"{nb} budget: L(N, D) along one IsoFLOP curve cannot separate E, A/N^alpha and B/D^beta")
    return out


def a3_reasons(law, N, D, loss, budgets, estimates=None) -> list[str]:
    """Every check for an Approach 3 fit (law: ChinchillaLaw) on its data."""
    out = count_reasons_a3(N, D, budgets)
    out += value_reasons(dict(E=law.E, alpha=law.alpha, beta=law.beta), float(np.min(loss)))
    if estimates:
        out += interval_reasons(estimates, ("E", "alpha", "beta"))
    lN, lD = np.log(np.asarray(N, float)), np.log(np.asarray(D, float))

    def predict(t):
        a, b, e, al, be = t
        return np.logaddexp(np.logaddexp(a - al * lN, b - be * lD), e)

    if not out:
        cond = jacobian_condition(predict, law.theta)
        if not cond < COND_LIMIT:
            out.append(f"Jacobian condition number {cond:.2g} > {COND_LIMIT:g}: the data do not separate "
                       "the parameters")
    return out


def frontier_reasons(fr) -> list[str]:
    """Every check for a frontier.Frontier fit."""
    C = fr.minima["budget"].to_numpy(float)
    out = []
    if len(np.unique(C)) < 4:
        out.append(f"{len(np.unique(C))} budgets for 3 parameters (need >= 4)")
    vals = dict(E=fr.law.E, gamma=fr.law.gamma)
    vals.update({k: v for k, v in (("a", fr.n_opt.a if fr.n_opt else None), ("b", fr.d_opt.a if fr.d_opt else None))
                 if v is not None})
    out += value_reasons(vals, float(fr.minima["loss"].min()))
    out += interval_reasons(fr.estimates, ("E", "gamma", "a", "b"))
    lC = np.log(C)

    def predict(t):
        le, lk, g = t
        return np.logaddexp(le, lk - g * lC)

    if not out:
        cond = jacobian_condition(predict, fr.theta)
        if not cond < COND_LIMIT:
            out.append(f"Jacobian condition number {cond:.2g} > {COND_LIMIT:g}: the minima do not separate "
                       "E, K and gamma")
    return out


def power_law_reasons(estimates: dict, n_budgets: int) -> list[str]:
    """Approaches 1 and 2: N_opt ∝ C^a, D_opt ∝ C^b from >= 3 budgets, exponents and intervals in range."""
    out = []
    if n_budgets < 3:
        out.append(f"{n_budgets} budgets: a power law through {n_budgets} points has no residual (need >= 3)")
    out += value_reasons({k: estimates[k].value for k in ("a", "b") if k in estimates})
    out += interval_reasons(estimates, ("a", "b"))
    return out
