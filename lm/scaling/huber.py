"""The robust loss every parametric fit minimises: Huber on log-loss residuals (Chinchilla, Epoch),
and the log-sum-exp that turns E + A/N^alpha + B/D^beta into a sum of exponentials."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

DELTA = 1e-3
"""Huber threshold on log-loss residuals used by Chinchilla and Epoch."""


def huber(r, delta: float = DELTA):
    """Huber loss, elementwise: r^2/2 for |r| <= delta, else delta (|r| - delta/2) (as scipy)."""
    r = np.asarray(r, float)
    ar = np.abs(r)
    return np.where(ar <= delta, 0.5 * r * r, delta * (ar - 0.5 * delta))


def jax_huber(r, delta):
    """`huber` in jax (differentiable, for the L-BFGS objectives)."""
    ar = jnp.abs(r)
    return jnp.where(ar <= delta, 0.5 * r * r, delta * (ar - 0.5 * delta))


def logsumexp3(u1, u2, u3):
    """log(e^u1 + e^u2 + e^u3), elementwise, stable (the max is held out of the gradient)."""
    m = jax.lax.stop_gradient(jnp.maximum(jnp.maximum(u1, u2), u3))
    return m + jnp.log(jnp.exp(u1 - m) + jnp.exp(u2 - m) + jnp.exp(u3 - m))
