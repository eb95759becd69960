"""Encoder-decoder scaling: Ghorbani et al. 2021 ("Scaling Laws for Neural Machine Translation").

The law, with the encoder's and the decoder's parameter counts N_e, N_d in units of a reference
model's (N_e_ref, N_d_ref):

    L(N_e, N_d) = beta * (N_e / N_e_ref)^(-p_e) * (N_d / N_d_ref)^(-p_d) + L_inf

beta is the reducible loss of the reference model, p_e and p_d the encoder's and the decoder's
exponents, L_inf the loss of infinitely large encoder and decoder. Fitted as Approach 3 is
(lm/scaling/fit.py): theta = (b, p_e, p_d, e) with beta = e^b and L_inf = e^e, minimising
sum_i Huber_delta(LSE(b - p_e x_e - p_d x_d, e) - log L_i), x = log(N / N_ref), from every start
of a grid at once (`optimize.minimize_batch`), keeping the best; bootstrap intervals refit
resampled points from the best minima.

Whether the data identify the exponents is part of the answer (`GhorbaniFit.unidentified`): a
side with a single size has no exponent, losses that all sit within the Huber threshold of one
another (every model reached the task's floor) carry no slope, and a bootstrap interval that
reaches 0 or spans more than 10x says the exponent is not pinned down.

    fit = fit_ghorbani(N_e, N_d, loss, n_bootstrap=200)
    print(fit.summary()); fit.law.loss(N_e, N_d)
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np

from lm.scaling.bootstrap import Estimate, estimate, resample_weights
from lm.scaling.fit import DELTA, best_fit, check_points
from lm.scaling.huber import jax_huber
from lm.scaling.optimize import LBFGSOptions, minimize_batch

MAX_EXPONENT_SPAN = 10.0
"""A bootstrap interval of an exponent wider than this factor (hi / lo) leaves it unidentified."""


@dataclass(frozen=True)
class GhorbaniLaw:
    """L(N_e, N_d) = beta (N_e/N_e_ref)^-p_e (N_d/N_d_ref)^-p_d + L_inf (Ghorbani et al. 2021, eq. 1)."""

    beta: float
    """Reducible loss of the reference model (nats/token)."""
    p_e: float
    """Encoder exponent."""
    p_d: float
    """Decoder exponent."""
    L_inf: float
    """Irreducible loss (nats/token)."""
    N_e_ref: float
    """Reference encoder size (parameters)."""
    N_d_ref: float
    """Reference decoder size (parameters)."""

    def loss(self, N_e, N_d) -> np.ndarray:
        N_e, N_d = np.asarray(N_e, float), np.asarray(N_d, float)
        return self.beta * (N_e / self.N_e_ref) ** -self.p_e * (N_d / self.N_d_ref) ** -self.p_d + self.L_inf

    def __str__(self) -> str:
        return (f"L = {self.beta:.4g} (N_e/{self.N_e_ref:.4g})^-{self.p_e:.4f} (N_d/{self.N_d_ref:.4g})^-"
                f"{self.p_d:.4f} + {self.L_inf:.4g}")


def ghorbani_grid() -> np.ndarray:
    """[900, 4] starts (b, p_e, p_d, e): beta from e^-4 to e^1, exponents 0..1.5, L_inf e^-4 to e^1."""
    b = [-4.0, -3.0, -2.0, -1.0, 0.0, 1.0]
    p = [0.0, 0.1, 0.3, 0.6, 1.5]
    e = [-4.0, -3.0, -2.0, -1.0, 0.0, 1.0]
    return np.array(list(itertools.product(b, p, p, e)), dtype=np.float64)


def jax_ghorbani_objective(theta, w, x_e, x_d, lL, delta):
    """Weighted Huber objective on log loss. theta: [4] (b, p_e, p_d, e); w, x_e, x_d, lL: [n]."""
    b, p_e, p_d, e = theta
    u = b - p_e * x_e - p_d * x_d
    m = jax.lax.stop_gradient(jnp.maximum(u, e))
    pred = m + jnp.log(jnp.exp(u - m) + jnp.exp(e - m))
    return jnp.sum(w * jax_huber(pred - lL, delta))


def _law(theta, ref: tuple[float, float]) -> GhorbaniLaw:
    b, p_e, p_d, e = (float(t) for t in theta)
    return GhorbaniLaw(beta=float(np.exp(b)), p_e=p_e, p_d=p_d, L_inf=float(np.exp(e)), N_e_ref=ref[0], N_d_ref=ref[1])


@dataclass(frozen=True)
class GhorbaniFit:
    """The fitted law, bootstrap estimates of its parameters, and why (if) the data cannot identify it."""

    law: GhorbaniLaw
    estimates: dict[str, Estimate]
    """beta, p_e, p_d, L_inf: value (full data), standard error and percentile interval."""
    objective: float
    n_points: int
    unidentified: tuple[str, ...] = ()
    """One line per reason the exponents are not identified by these data; () = identified."""
    residuals: np.ndarray = field(default=None, repr=False)
    """[n] log(predicted / observed loss) at the points."""

    @property
    def identified(self) -> bool:
        return not self.unidentified

    def summary(self) -> str:
        lines = [f"Ghorbani et al. L(N_e, N_d) over {self.n_points} runs: {self.law}"]
        lines += [f"  {name:<6} {est}" for name, est in self.estimates.items()]
        if self.residuals is not None and len(self.residuals):
            lines.append(f"  max |log(pred/obs)| = {np.max(np.abs(self.residuals)):.4f}")
        if self.unidentified:
            lines.append("  the data cannot identify the exponents:")
            lines += [f"    - {why}" for why in self.unidentified]
        else:
            lines.append(f"  exponents identified: p_e {self.law.p_e:.3f}, p_d {self.law.p_d:.3f} "
                         f"(p_e/p_d = {self.law.p_e / self.law.p_d if self.law.p_d else float('inf'):.2f})")
        return "\n".join(lines)


def _bootstrap(fit, data, n: int, n_bootstrap: int, seed: int, opts: LBFGSOptions) -> np.ndarray:
    """[R, 4] best theta of each resample, refitted from the full fit's distinct minima."""
    weights = resample_weights(n, n_bootstrap, np.random.default_rng(seed))
    starts = fit.minima[:4]
    k = len(starts)
    res = minimize_batch(jax_ghorbani_objective, np.tile(starts, (n_bootstrap, 1)),
                         np.repeat(weights, k, axis=0), data, opts)
    value = np.where(np.isfinite(res.value), res.value, np.inf).reshape(n_bootstrap, k)
    return res.theta.reshape(n_bootstrap, k, 4)[np.arange(n_bootstrap), np.argmin(value, axis=1)]


def _reasons(cols, est: dict[str, Estimate], delta: float) -> list[str]:
    """Why the exponents are not identified (empty when they are)."""
    out = []
    for side, name, part in (("N_e", "p_e", "encoder"), ("N_d", "p_d", "decoder")):
        sizes = np.unique(cols[side])
        if len(sizes) < 2:
            out.append(f"{side} takes a single value ({sizes[0]:.4g}): {name} needs at least two {part} sizes")
    spread = float(np.ptp(np.log(cols["loss"])))
    if spread <= 2 * delta:
        out.append(f"the losses span only {spread:.2e} in log loss (<= 2 x the Huber threshold {delta:g}): every "
                   "size reaches the same loss (the task's floor, or too few steps to separate them)")
    for name, part in (("p_e", "encoder"), ("p_d", "decoder")):
        e = est[name]
        if e.value <= 0:
            out.append(f"{name} = {e.value:.3g} <= 0: the loss does not fall as the {part} grows (larger models "
                       "trained less far in the same steps, or that side does not matter for this task)")
        elif np.isfinite(e.lo) and (e.lo <= 1e-3 or e.hi / e.lo > MAX_EXPONENT_SPAN):
            out.append(f"{name}'s {100 * e.level:.0f} % bootstrap interval [{e.lo:.3g}, {e.hi:.3g}] "
                       f"{'reaches 0' if e.lo <= 1e-3 else f'spans {e.hi / e.lo:.0f}x'}")
    return out


def fit_ghorbani(N_e, N_d, loss, *, ref: tuple[float, float] | None = None, delta: float = DELTA,
                 n_bootstrap: int = 200, seed: int = 0, opts: LBFGSOptions = LBFGSOptions()) -> GhorbaniFit:
    """Fit L(N_e, N_d) (module docstring). N_e, N_d: [n] encoder/decoder parameter counts; loss: [n]
    nats/token. ref: the reference sizes (N_e_ref, N_d_ref); None = the geometric means of the
    data's sizes (so beta is the reducible loss in the middle of the grid). n_bootstrap: resamples
    for the intervals (0: none; the exponents are then judged identified from the spread alone)."""
    cols = check_points(4, N_e=N_e, N_d=N_d, loss=loss)
    if ref is None:
        ref = (float(np.exp(np.mean(np.log(cols["N_e"])))), float(np.exp(np.mean(np.log(cols["N_d"])))))
    if len(ref) != 2 or not all(np.isfinite(r) and r > 0 for r in ref):
        raise ValueError(f"ref={ref} must be two positive reference sizes (N_e_ref, N_d_ref)")
    data = (np.log(cols["N_e"] / ref[0]), np.log(cols["N_d"] / ref[1]), np.log(cols["loss"]), np.float64(delta))
    starts = ghorbani_grid()
    res = minimize_batch(jax_ghorbani_objective, starts, np.ones(len(cols["loss"])), data, opts)
    law = lambda t: _law(t, ref)
    best = best_fit(res, starts, law, lambda t: np.log(law(t).loss(cols["N_e"], cols["N_d"])), len(cols["loss"]))
    theta = best.theta
    samples = (_bootstrap(best, data, len(cols["loss"]), n_bootstrap, seed, opts) if n_bootstrap
               else np.zeros((0, 4)))
    est = {"beta": estimate(np.exp(theta[0]), np.exp(samples[:, 0])),
           "p_e": estimate(theta[1], samples[:, 1]), "p_d": estimate(theta[2], samples[:, 2]),
           "L_inf": estimate(np.exp(theta[3]), np.exp(samples[:, 3]))}
    residuals = np.log(best.law.loss(cols["N_e"], cols["N_d"]) / cols["loss"])
    return GhorbaniFit(law=best.law, estimates=est, objective=best.objective, n_points=len(cols["loss"]),
                       unidentified=tuple(_reasons(cols, est, delta)), residuals=residuals)


def ghorbani_surface(law: GhorbaniLaw, N_e, N_d, noise: float = 0.0, seed: int = 0) -> np.ndarray:
    """Losses of `law` on the grid N_e x N_d (flattened, N_e major), times exp(noise * standard normal):
    a synthetic sweep from known constants (tests, planning)."""
    e, d = np.meshgrid(np.asarray(N_e, float), np.asarray(N_d, float), indexing="ij")
    clean = law.loss(e.ravel(), d.ravel())
    return clean * np.exp(noise * np.random.default_rng(seed).standard_normal(clean.shape))
