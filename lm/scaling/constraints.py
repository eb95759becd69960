"""Choices and constraints of an Approach 3 fit: fixed E, tied exponents, Huber delta, loss space.

    FitConstraints(fix_E=1.69)            # E held at 1.69 nats/token
    FitConstraints(tie_exponents=True)    # alpha = beta
    FitConstraints(delta=1e-2, space="linear")

The default (E free, alpha and beta free, delta = 1e-3, residuals log(pred) - log(loss)) is
Chinchilla's and Epoch's published objective. With `space="linear"` the residuals are
pred - loss in nats. Constraints act inside one objective (`jax_constrained_objective`): a
fixed E replaces e = log E, a tie replaces beta by alpha, so the constrained coordinates get a
zero gradient and never move; `apply` writes the constraint into a parameter vector.
Every fit records `as_dict()` so a reader of the output JSON knows which objective was minimised.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import jax.numpy as jnp
import numpy as np

from lm.scaling.huber import DELTA, huber, jax_huber, logsumexp3

SPACES = ("log", "linear")


@dataclass(frozen=True)
class FitConstraints:
    """What the parametric fit L = E + A/N^alpha + B/D^beta may vary, and how it scores points."""

    fix_E: float | None = None
    """Irreducible loss held fixed (nats/token), or None to fit it."""
    tie_exponents: bool = False
    """Fit one exponent alpha = beta (Muennighoff et al. 2023 did)."""
    delta: float = DELTA
    """Huber threshold on the residuals (1e-3: Chinchilla's, in log space)."""
    space: str = "log"
    """Residuals in "log" space (log pred - log loss; Chinchilla's) or "linear" (pred - loss)."""

    def __post_init__(self):
        if self.fix_E is not None and not (np.isfinite(self.fix_E) and self.fix_E > 0):
            raise ValueError(f"fix_E={self.fix_E}: a fixed irreducible loss must be finite and > 0 "
                             "(nats/token, e.g. 1.69)")
        if not (np.isfinite(self.delta) and self.delta > 0):
            raise ValueError(f"huber delta={self.delta}: must be finite and > 0 (1e-3 is Chinchilla's)")
        if self.space not in SPACES:
            raise ValueError(f"loss space {self.space!r}: use one of {SPACES}")

    @property
    def default(self) -> bool:
        """The published objective (no constraint, delta 1e-3, log space)."""
        return self == FitConstraints()

    def n_free(self) -> int:
        """Free parameters (5 less the constrained ones)."""
        return 5 - (self.fix_E is not None) - self.tie_exponents

    def flags(self) -> tuple[np.ndarray, ...]:
        """Scalars passed to the objective: (fix E?, log E fixed, tie?, linear?)."""
        f = lambda v: np.asarray(v, np.float64)
        return (f(self.fix_E is not None), f(np.log(self.fix_E) if self.fix_E else 0.0),
                f(self.tie_exponents), f(self.space == "linear"))

    def apply(self, theta) -> np.ndarray:
        """theta [..., 5] (log A, log B, log E, alpha, beta) with the constraints written in."""
        t = np.array(theta, dtype=np.float64, copy=True)
        if self.fix_E is not None:
            t[..., 2] = np.log(self.fix_E)
        if self.tie_exponents:
            t[..., 4] = t[..., 3]
        return t

    def objective(self, theta, N, D, loss, weights=None) -> float:
        """The weighted Huber objective at theta [5] in numpy float64."""
        a, b, e, alpha, beta = self.apply(theta)
        lN, lD = np.log(np.asarray(N, float)), np.log(np.asarray(D, float))
        pred = np.logaddexp(np.logaddexp(a - alpha * lN, b - beta * lD), e)
        L = np.asarray(loss, float)
        r = np.exp(pred) - L if self.space == "linear" else pred - np.log(L)
        h = huber(r, self.delta)
        return float(np.sum(h if weights is None else np.asarray(weights, float) * h))

    def as_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        parts = [f"Huber delta {self.delta:g} on {self.space} residuals"]
        if self.fix_E is not None:
            parts.append(f"E fixed at {self.fix_E:g}")
        if self.tie_exponents:
            parts.append("alpha = beta")
        return ", ".join(parts)


def jax_constrained_objective(theta, w, lN, lD, lL, delta, fix_e, log_e, tie, linear):
    """Weighted Huber objective under constraints. theta: [5]; w, lN, lD, lL: [n]; the rest scalars."""
    a, b, e, alpha, beta = theta
    e = jnp.where(fix_e > 0, log_e, e)
    beta = jnp.where(tie > 0, alpha, beta)
    pred = logsumexp3(a - alpha * lN, b - beta * lD, jnp.broadcast_to(e, lN.shape))
    # exp capped so the unused branch's gradient stays finite (losses are far below e^30 nats)
    r = jnp.where(linear > 0, jnp.exp(jnp.minimum(pred, 30.0)) - jnp.exp(lL), pred - lL)
    return jnp.sum(w * jax_huber(r, delta))
