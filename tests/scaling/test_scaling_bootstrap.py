"""Bootstrap intervals: Epoch's standard errors, warm starts reach the grid optimum."""

import numpy as np
import pytest

from lm.scaling.bootstrap import bootstrap_chinchilla, estimate, resample_weights
from lm.scaling.fit import chinchilla_objective, fit_chinchilla

# Besiroglu et al. 2024's bootstrap standard errors on the same 240 points.
EPOCH_SE = {"alpha": 0.015, "beta": 0.021, "E": 0.026}


def _bootstrap(epoch_points, epoch_fit, n):
    return bootstrap_chinchilla(epoch_points["N"], epoch_points["D"], epoch_points["loss"], epoch_fit,
                                n_resamples=n, seed=0, budgets=(5.76e23, 1e25))


def test_resample_weights_are_multinomial_counts():
    w = resample_weights(240, 500, np.random.default_rng(0))
    assert w.shape == (500, 240)
    assert (w.sum(axis=1) == 240).all() and (w >= 0).all()
    # Each point appears in a resample with probability 1 - (1 - 1/n)^n ~ 63.2%.
    assert (w > 0).mean() == pytest.approx(1 - (1 - 1 / 240) ** 240, abs=0.01)


def test_estimate_percentiles_and_se():
    s = np.random.default_rng(0).normal(2.0, 0.5, 200_000)
    e = estimate(2.0, np.append(s, np.nan))
    assert e.se == pytest.approx(0.5, rel=0.01)
    assert e.lo == pytest.approx(2 - 1.96 * 0.5, abs=0.01) and e.hi == pytest.approx(2 + 1.96 * 0.5, abs=0.01)
    assert "±" in str(e)


def test_small_bootstrap_is_reproducible_and_consistent(epoch_points, epoch_fit):
    a = _bootstrap(epoch_points, epoch_fit, 64)
    b = _bootstrap(epoch_points, epoch_fit, 64)
    np.testing.assert_array_equal(a.samples, b.samples)
    assert a.samples.shape == (64, 5) and a.n_opt.shape == (64, 2)
    est = a.estimates
    for k in ("E", "A", "B", "alpha", "beta", "a", "b", "G", "D/N@5.76e+23", "N_opt@1e+25"):
        assert est[k].lo <= est[k].value <= est[k].hi, k
    # Derived quantities are computed per resample from that resample's law.
    E, A, B, alpha, beta = a.samples.T
    np.testing.assert_allclose(a.d_opt[:, 0] * a.n_opt[:, 0] * 6, 5.76e23, rtol=1e-12)
    assert est["a"].se == pytest.approx(np.std(beta / (alpha + beta), ddof=1))
    assert "alpha" in a.summary()
    # Each resample's refit is no worse than the full-data law on that resample (which is one
    # of its starts), and strictly better on most: the refit really minimises.
    w = resample_weights(len(epoch_points), 64, np.random.default_rng(0))
    start = np.array([chinchilla_objective(epoch_fit.law, epoch_points["N"], epoch_points["D"],
                                           epoch_points["loss"], weights=wr) for wr in w])
    assert (a.objective <= start * (1 + 1e-12)).all()
    assert (a.objective < start * (1 - 1e-6)).mean() > 0.9


@pytest.mark.slow
def test_standard_errors_match_epochs(epoch_points, epoch_fit):
    boot = _bootstrap(epoch_points, epoch_fit, 1000)
    for name, se in EPOCH_SE.items():
        assert boot.estimates[name].se == pytest.approx(se, rel=0.25), name


@pytest.mark.slow
def test_warm_started_refits_reach_the_full_grid_optimum(epoch_points, epoch_fit):
    N, D, L = (epoch_points[c].to_numpy() for c in ("N", "D", "loss"))
    boot = bootstrap_chinchilla(N, D, L, epoch_fit, n_resamples=3, seed=7)
    weights = resample_weights(len(N), 3, np.random.default_rng(7))
    for r in range(3):
        grid = fit_chinchilla(N, D, L, weights=weights[r])
        assert boot.objective[r] == pytest.approx(grid.objective, rel=1e-9)
