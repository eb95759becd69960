"""Parameter recovery: points drawn from known laws are fitted back (property-based).

Tolerances come from the noise. With log-normal noise of sd sigma on each loss, the fit's
log-residuals are sigma-noise; linearising log L(theta) around the truth with Jacobian J [n, 5]
gives cov(theta_hat) ~= c sigma^2 (J^T J)^-1, where c = 1 for least squares and c = pi/2 for
least absolute deviations (Huber with delta = 1e-3 << sigma behaves like the latter). We
accept |theta_hat - theta| <= 6 * sqrt(c * diag) per parameter (a 6-sigma band, so 5
parameters x many examples stay far from chance failures), plus 1e-6 for round-off.
Noise-free data must be recovered to 1e-4 relative (the optimiser's own accuracy).
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lm.scaling.fit import chinchilla_grid, fit_chinchilla
from lm.scaling.laws import ChinchillaLaw

# A coarser subset of Chinchilla's grid (243 of 4,500 starts) keeps the fast tests fast.
COARSE = chinchilla_grid()[np.all(np.isin(chinchilla_grid(), [0, 1, 2, 10, 20, -1]), axis=1)]

laws = st.builds(ChinchillaLaw,
                 E=st.floats(1.0, 3.0), A=st.floats(100.0, 1000.0), B=st.floats(300.0, 3000.0),
                 alpha=st.floats(0.25, 0.45), beta=st.floats(0.25, 0.45))


def design(seed: int, n: int = 200):
    """N log-uniform in [1e7, 1e10] params, D log-uniform in [1e9, 1e12] tokens."""
    rng = np.random.default_rng(seed)
    return np.exp(rng.uniform(np.log(1e7), np.log(1e10), n)), np.exp(rng.uniform(np.log(1e9), np.log(1e12), n))


def jacobian(law: ChinchillaLaw, N, D) -> np.ndarray:
    """d log L / d(a, b, e, alpha, beta) at `law`: [n, 5]."""
    tA, tB = law.A * N ** -law.alpha, law.B * D ** -law.beta
    total = law.E + tA + tB
    pA, pB, pE = tA / total, tB / total, law.E / total
    return np.stack([pA, pB, pE, -pA * np.log(N), -pB * np.log(D)], axis=1)


def test_coarse_grid_is_a_subset():
    assert COARSE.shape == (243, 5)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(law=laws, seed=st.integers(0, 2 ** 16))
def test_noise_free_points_are_recovered_exactly(law, seed):
    N, D = design(seed)
    fit = fit_chinchilla(N, D, law.loss(N, D), starts=COARSE)
    np.testing.assert_allclose(fit.theta, law.theta, rtol=1e-4, atol=1e-6)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(law=laws, seed=st.integers(0, 2 ** 16), sigma=st.sampled_from([0.003, 0.01, 0.02]))
def test_noisy_points_are_recovered_within_the_noise(law, seed, sigma):
    N, D = design(seed)
    loss = law.loss(N, D) * np.exp(sigma * np.random.default_rng(seed + 1).standard_normal(len(N)))
    fit = fit_chinchilla(N, D, loss, starts=COARSE)
    J = jacobian(law, N, D)
    se = np.sqrt(np.pi / 2 * sigma ** 2 * np.diag(np.linalg.inv(J.T @ J)))
    near_truth = fit_chinchilla(N, D, loss, starts=law.theta[None])  # the minimum of the truth's basin
    assert fit.objective <= near_truth.objective * (1 + 1e-9)  # the grid finds at least that basin
    # At 2 % noise a draw can put the global minimum in another basin, a degenerate law (beta -> 0
    # trades B/D^beta against E; e.g. E=1, A=217, B=300, alpha=0.25, beta=0.375, seed 1, sigma 0.02:
    # objective below the truth's basin minimum, and the full 4,500-start grid agrees): the data, not
    # the fitter, fail to identify the parameters. Otherwise they are within the noise.
    identified = fit.objective >= near_truth.objective * (1 - 1e-6)
    assert not identified or np.all(np.abs(fit.theta - law.theta) <= 6 * se + 1e-6), (fit.theta - law.theta) / se


@pytest.mark.slow
@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(law=laws, seed=st.integers(0, 2 ** 16))
def test_noisy_recovery_with_the_full_grid(law, seed):
    sigma = 0.01
    N, D = design(seed, n=240)
    loss = law.loss(N, D) * np.exp(sigma * np.random.default_rng(seed + 1).standard_normal(len(N)))
    fit = fit_chinchilla(N, D, loss)
    J = jacobian(law, N, D)
    se = np.sqrt(np.pi / 2 * sigma ** 2 * np.diag(np.linalg.inv(J.T @ J)))
    near_truth = fit_chinchilla(N, D, loss, starts=law.theta[None])  # the minimum of the truth's basin
    assert fit.objective <= near_truth.objective * (1 + 1e-9)  # the grid finds at least that basin
    # At 2 % noise a draw can put the global minimum in another basin, a degenerate law (beta -> 0
    # trades B/D^beta against E; e.g. E=1, A=217, B=300, alpha=0.25, beta=0.375, seed 1, sigma 0.02:
    # objective below the truth's basin minimum, and the full 4,500-start grid agrees): the data, not
    # the fitter, fail to identify the parameters. Otherwise they are within the noise.
    identified = fit.objective >= near_truth.objective * (1 - 1e-6)
    assert not identified or np.all(np.abs(fit.theta - law.theta) <= 6 * se + 1e-6), (fit.theta - law.theta) / se
