"""Scaling-law functional forms and compute-optimal allocation.

Units everywhere: N = parameters, D = training tokens, C = training FLOPs, loss in nats per
token. Every function accepts scalars or numpy arrays and broadcasts.

Published constants live here (tested in tests/scaling/test_laws.py), never in prose:
- Chinchilla (Hoffmann et al. 2022, eq. 10 / App. D.2): E = 1.69, A = 406.4, B = 410.7,
  alpha = 0.34, beta = 0.28, under C = 6ND.
- Chinchilla's unrounded values (as quoted by Besiroglu et al. 2024 from the paper's
  source): log A = 6.0073404, log B = 6.0179186, log E = 0.5267228, alpha = 0.33917084,
  beta = 0.2849083.
- Epoch's refit of Chinchilla's data (Besiroglu et al. 2024, Table 1): E = 1.8172,
  A = 482.01, B = 2085.43, alpha = 0.3478, beta = 0.3658.
- Kaplan et al. 2020 (eq. 1.5, Table 2): N_c = 6.4e13, D_c = 1.8e13, alpha_N = 0.076,
  alpha_D = 0.103 for L(N, D); single-variable L(N): N_c = 8.8e13, alpha_N = 0.076;
  L(D): D_c = 5.4e13, alpha_D = 0.095; L(C_min): C_c = 3.1e8 PF-days, alpha_C = 0.050; and
  the compute-efficient size N_opt = 1.3e9 * C^0.73 with C in PF-days (Fig. 14). Kaplan's N
  excludes embeddings; one PF-day = 8.64e19 FLOPs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy.optimize import brentq

FlopsPerToken = Callable[[float], float]
"""N (parameters) -> training FLOPs per token, e.g. `lambda n: 6 * n` (the default)."""

PF_DAY = 1e15 * 24 * 3600
"""FLOPs in one petaFLOP/s-day (Kaplan et al.'s compute unit): 8.64e19."""


def six_n(n: float) -> float:
    """The standard convention C = 6 N D: 6N training FLOPs per token."""
    return 6.0 * n


@dataclass(frozen=True)
class ChinchillaLaw:
    """L(N, D) = E + A / N^alpha + B / D^beta (Hoffmann et al. 2022, eq. 2)."""

    E: float
    """Irreducible loss, nats/token."""
    A: float
    """Model-size coefficient, nats * params^alpha."""
    B: float
    """Data coefficient, nats * tokens^beta."""
    alpha: float
    """Model-size exponent."""
    beta: float
    """Data exponent."""

    @classmethod
    def from_log(cls, a: float, b: float, e: float, alpha: float, beta: float) -> "ChinchillaLaw":
        """From the log-sum-exp parameterisation (a, b, e) = (log A, log B, log E)."""
        return cls(E=float(np.exp(e)), A=float(np.exp(a)), B=float(np.exp(b)),
                   alpha=float(alpha), beta=float(beta))

    def __str__(self) -> str:
        return f"L = {self.E:.4g} + {self.A:.4g}/N^{self.alpha:.4f} + {self.B:.4g}/D^{self.beta:.4f}"

    @property
    def theta(self) -> np.ndarray:
        """[5] = (log A, log B, log E, alpha, beta), the fit's parameter vector."""
        return np.array([np.log(self.A), np.log(self.B), np.log(self.E), self.alpha, self.beta])

    def loss(self, N, D):
        """Predicted loss at N parameters and D tokens (broadcasting)."""
        N, D = np.asarray(N, float), np.asarray(D, float)
        return self.E + self.A * N ** -self.alpha + self.B * D ** -self.beta

    @property
    def a(self) -> float:
        """N_opt exponent under C = 6ND: N_opt ∝ C^a, a = beta / (alpha + beta)."""
        return self.beta / (self.alpha + self.beta)

    @property
    def b(self) -> float:
        """D_opt exponent under C = 6ND: D_opt ∝ C^b, b = alpha / (alpha + beta)."""
        return self.alpha / (self.alpha + self.beta)

    @property
    def G(self) -> float:
        """G = (alpha A / (beta B))^(1 / (alpha + beta)) (Hoffmann et al. 2022, eq. 4)."""
        return (self.alpha * self.A / (self.beta * self.B)) ** (1.0 / (self.alpha + self.beta))

    def optimal(self, C, flops_per_token: FlopsPerToken | None = None):
        """Compute-optimal (N_opt, D_opt) at budget C FLOPs.

        With flops_per_token None (C = 6ND) this is the closed form N_opt = G (C/6)^a,
        D_opt = G^-1 (C/6)^b. Any other convention is solved numerically: minimise
        L(N, C / flops_per_token(N)) over N (see `optimal_allocation`).
        """
        if flops_per_token is None:
            c6 = np.asarray(C, float) / 6.0
            return self.G * c6 ** self.a, c6 ** self.b / self.G
        return optimal_allocation(self, C, flops_per_token)

    def tokens_per_parameter(self, C, flops_per_token: FlopsPerToken | None = None):
        """D_opt / N_opt at budget C."""
        n, d = self.optimal(C, flops_per_token)
        return d / n

    def optimal_loss(self, C, flops_per_token: FlopsPerToken | None = None):
        """L(N_opt(C), D_opt(C)): the loss of the compute-optimal model at budget C."""
        n, d = self.optimal(C, flops_per_token)
        return self.loss(n, d)


def optimal_allocation(law: ChinchillaLaw, C, flops_per_token: FlopsPerToken):
    """Numerical compute-optimal (N_opt, D_opt) under D = C / flops_per_token(N).

    Solves dL/dlogN = 0 along the budget: with x = log N and D = C / f(N),
    dL/dx = -alpha A N^-alpha + beta B D^-beta * dlog f/dx. dlog f/dx comes from a central
    difference in x (h = 1e-5, error ~1e-10 for smooth f); the root is bracketed around the
    6ND closed form and refined by Brent's method to |dx| <= 1e-13.
    C: scalar or array of budgets (FLOPs). Returns arrays shaped like C.
    """
    C_arr = np.atleast_1d(np.asarray(C, float))
    if not np.all(np.isfinite(C_arr) & (C_arr > 0)):
        raise ValueError(f"budgets must be positive and finite, got {C_arr}")
    n_out = np.empty_like(C_arr)
    h = 1e-5
    for i, c in enumerate(C_arr):
        def dldx(x, c=c):
            f0 = float(flops_per_token(np.exp(x)))
            dlogf = (np.log(float(flops_per_token(np.exp(x + h))))
                     - np.log(float(flops_per_token(np.exp(x - h))))) / (2 * h)
            D = c / f0
            return -law.alpha * law.A * np.exp(-law.alpha * x) + law.beta * law.B * D ** -law.beta * dlogf

        x0 = float(np.log(law.optimal(c)[0]))
        lo, hi, step = x0 - 0.5, x0 + 0.5, 0.5
        while dldx(lo) > 0 and step < 64:
            step *= 2
            lo = x0 - step
        while dldx(hi) < 0 and step < 64:
            step *= 2
            hi = x0 + step
        if not (dldx(lo) <= 0 <= dldx(hi)):
            raise ValueError(f"no compute-optimal N found for C={c:g}: check flops_per_token")
        n_out[i] = np.exp(brentq(dldx, lo, hi, xtol=1e-13, rtol=4 * np.finfo(float).eps))
    d_out = np.array([c / float(flops_per_token(n)) for c, n in zip(C_arr, n_out)])
    if np.ndim(C) == 0:
        return float(n_out[0]), float(d_out[0])
    return n_out.reshape(np.shape(C)), d_out.reshape(np.shape(C))


@dataclass(frozen=True)
class KaplanLaw:
    """L(N, D) = [(N_c / N)^(alpha_N / alpha_D) + D_c / D]^alpha_D (Kaplan et al. 2020, eq. 1.5)."""

    N_c: float
    """Parameter scale, params (non-embedding in Kaplan's paper)."""
    D_c: float
    """Data scale, tokens."""
    alpha_N: float
    alpha_D: float

    def __str__(self) -> str:
        return (f"L = [({self.N_c:.4g}/N)^({self.alpha_N:.4f}/{self.alpha_D:.4f}) + "
                f"{self.D_c:.4g}/D]^{self.alpha_D:.4f}")

    @property
    def theta(self) -> np.ndarray:
        """[4] = (log N_c, log D_c, alpha_N, alpha_D), the fit's parameter vector."""
        return np.array([np.log(self.N_c), np.log(self.D_c), self.alpha_N, self.alpha_D])

    def loss(self, N, D):
        N, D = np.asarray(N, float), np.asarray(D, float)
        return ((self.N_c / N) ** (self.alpha_N / self.alpha_D) + self.D_c / D) ** self.alpha_D


@dataclass(frozen=True)
class KaplanPowerLaw:
    """Single-variable L(x) = (x_c / x)^alpha: Kaplan's L(N), L(D) and L(C_min)."""

    x_c: float
    """Scale in the units of x (params, tokens or FLOPs)."""
    alpha: float

    def loss(self, x):
        return (self.x_c / np.asarray(x, float)) ** self.alpha


@dataclass(frozen=True)
class OffsetPowerLaw:
    """L(C) = E + K * C^-gamma: loss versus compute with an irreducible offset."""

    E: float
    K: float
    gamma: float

    def __str__(self) -> str:
        return f"L = {self.E:.4g} + {self.K:.4g}·C^-{self.gamma:.4f}"

    def loss(self, C):
        return self.E + self.K * np.asarray(C, float) ** -self.gamma


@dataclass(frozen=True)
class PowerLaw:
    """y = G * x^a, e.g. N_opt(C) = G C^a or D_opt(C)."""

    G: float
    a: float

    def __call__(self, x):
        return self.G * np.asarray(x, float) ** self.a


CHINCHILLA = ChinchillaLaw(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)
"""Hoffmann et al. 2022's published (rounded) Approach 3 fit."""
CHINCHILLA_UNROUNDED = ChinchillaLaw.from_log(
    a=6.0073404, b=6.0179186, e=0.5267228, alpha=0.33917084, beta=0.2849083)
"""Hoffmann et al. 2022's unrounded Approach 3 fit."""
EPOCH_REFIT = ChinchillaLaw(E=1.8172, A=482.01, B=2085.43, alpha=0.3478, beta=0.3658)
"""Besiroglu et al. 2024's refit of Chinchilla's Figure 4 data."""
KAPLAN = KaplanLaw(N_c=6.4e13, D_c=1.8e13, alpha_N=0.076, alpha_D=0.103)
"""Kaplan et al. 2020, eq. 1.5 with Table 2's constants."""
KAPLAN_L_N = KaplanPowerLaw(x_c=8.8e13, alpha=0.076)
KAPLAN_L_D = KaplanPowerLaw(x_c=5.4e13, alpha=0.095)
KAPLAN_L_C = KaplanPowerLaw(x_c=3.1e8 * PF_DAY, alpha=0.050)
"""Kaplan's L(C_min) with C in FLOPs (3.1e8 PF-days)."""
KAPLAN_N_OPT = PowerLaw(G=1.3e9 * PF_DAY ** -0.73, a=0.73)
"""Kaplan's compute-efficient N(C) = 1.3e9 (C / PF-day)^0.73, C in FLOPs."""


def kaplan_optimal(C, flops_per_token: FlopsPerToken = six_n):
    """Kaplan et al.'s compute-efficient (N, D) at C FLOPs: N from Fig. 14, D = C / f(N)."""
    n = KAPLAN_N_OPT(C)
    return n, np.asarray(C, float) / flops_per_token(n)
