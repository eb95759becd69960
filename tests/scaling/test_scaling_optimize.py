"""The batched L-BFGS: correctness on known minima, lane independence, no global x64 leak."""

import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import minimize

from lm.scaling.optimize import LBFGSOptions, minimize_batch


def rosenbrock(theta, w, scale):
    """scale * Rosenbrock(theta); ignores the point weights (minimum 0 at (1, 1))."""
    x, y = theta
    return scale * ((1 - x) ** 2 + 100 * (y - x * x) ** 2) + 0 * jnp.sum(w)


def weighted_ls(theta, w, x, y):
    """sum_i w_i (y_i - theta0 - theta1 x_i)^2."""
    return jnp.sum(w * (y - theta[0] - theta[1] * x) ** 2)


def test_rosenbrock_from_many_starts():
    rng = np.random.default_rng(0)
    starts = rng.uniform(-2, 2, size=(40, 2))
    res = minimize_batch(rosenbrock, starts, np.ones(1), (np.float64(1.0),),
                         LBFGSOptions(gtol=1e-12, ftol=0.0, lanes=16))
    assert res.converged.all()
    np.testing.assert_allclose(res.theta, np.ones((40, 2)), atol=1e-6)
    assert (res.value < 1e-12).all()


def test_results_do_not_depend_on_lanes_or_order():
    rng = np.random.default_rng(1)
    starts = rng.uniform(-2, 2, size=(25, 2))
    # 8 lanes refilled several times vs 16 lanes, starts reversed (same compiled shapes as above).
    a = minimize_batch(rosenbrock, starts, np.ones(1), (np.float64(1.0),), LBFGSOptions(lanes=8))
    b = minimize_batch(rosenbrock, starts[::-1], np.ones(1), (np.float64(1.0),), LBFGSOptions(lanes=16))
    np.testing.assert_allclose(a.theta, b.theta[::-1], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(a.value, b.value[::-1], rtol=1e-12, atol=1e-300)


def test_per_problem_weights_match_weighted_least_squares():
    rng = np.random.default_rng(2)
    x = np.linspace(0, 1, 30)
    y = 0.5 + 2.0 * x + 0.1 * rng.standard_normal(30)
    W = rng.integers(0, 3, size=(12, 30)).astype(float)
    res = minimize_batch(weighted_ls, np.zeros((12, 2)), W, (x, y), LBFGSOptions(gtol=1e-12, ftol=0.0))
    for w, theta in zip(W, res.theta):
        X = np.stack([np.ones_like(x), x], axis=1)
        exact = np.linalg.solve(X.T @ (w[:, None] * X), X.T @ (w * y))
        np.testing.assert_allclose(theta, exact, rtol=1e-7, atol=1e-9)


def test_agrees_with_scipy_lbfgsb_on_a_smooth_problem():
    start = np.array([[-1.2, 1.0]])
    ours = minimize_batch(rosenbrock, start, np.ones(1), (np.float64(3.0),), LBFGSOptions(gtol=1e-10))
    ref = minimize(lambda t: 3.0 * ((1 - t[0]) ** 2 + 100 * (t[1] - t[0] ** 2) ** 2), start[0],
                   method="L-BFGS-B", options=dict(ftol=1e-15, gtol=1e-10))
    np.testing.assert_allclose(ours.theta[0], ref.x, atol=1e-5)


def test_float64_is_scoped():
    before = jnp.ones(1).dtype
    res = minimize_batch(rosenbrock, np.array([[0.0, 0.0]]), np.ones(1), (np.float64(1.0),))
    assert res.theta.dtype == np.float64
    assert jnp.ones(1).dtype == before  # the caller's setting, float32 by default


def test_bad_start_shape():
    with pytest.raises(ValueError, match=r"\[B, P\]"):
        minimize_batch(rosenbrock, np.zeros(2), np.ones(1), (np.float64(1.0),))


def shifted_quadratic(theta, w, x, scale):
    """scale * sum_i w_i (theta0 - x_i)^2 + (theta1 - 1)^2: its own objective, so its programs are
    compiled by this test only (minimum theta0 = weighted mean of x, theta1 = 1)."""
    return scale * jnp.sum(w * (theta[0] - x) ** 2) + (theta[1] - 1.0) ** 2


def test_compile_ahead_compiles_every_program_once_and_changes_nothing():
    import jax

    compiles = []
    jax.monitoring.register_event_duration_secs_listener(
        lambda event, secs, **kw: compiles.append(secs) if event == "/jax/core/compile/backend_compile_duration" else None)
    x = np.linspace(0.0, 3.0, 200)          # 200 points: padded to 256, a big batch's tail moves to 128 lanes
    starts = np.random.default_rng(2).uniform(-2, 2, size=(300, 2))
    data = (x, np.float64(2.0))
    opts = LBFGSOptions(lanes=256)
    from lm.scaling.optimize import compile_ahead
    thread = compile_ahead(shifted_quadratic, len(starts), 2, len(x), data, opts)
    res = minimize_batch(shifted_quadratic, starts, np.ones(len(x)), data, opts)  # waits for the programs
    thread.join()
    ahead = len(compiles)
    assert ahead >= 2                       # the 256-lane program and the 128-lane tail's
    again = minimize_batch(shifted_quadratic, starts, np.ones(len(x)), data, opts)
    assert len(compiles) == ahead           # nothing compiled twice or later
    np.testing.assert_array_equal(res.theta, again.theta)
    np.testing.assert_allclose(res.theta, np.tile([x.mean(), 1.0], (len(starts), 1)), atol=1e-3)
