"""Ghorbani et al.'s encoder-decoder law L(N_e, N_d): recovery of known constants from a synthetic
surface, and the report of why data cannot identify the exponents."""

import numpy as np
import pytest

from lm.scaling.ghorbani import GhorbaniLaw, fit_ghorbani, ghorbani_surface

TRUE = GhorbaniLaw(beta=0.8, p_e=0.25, p_d=0.45, L_inf=1.2, N_e_ref=1e5, N_d_ref=1e5)
SIZES = np.geomspace(1e4, 1e6, 4)


def _grid():
    e, d = np.meshgrid(SIZES, SIZES, indexing="ij")
    return e.ravel(), d.ravel()


def test_fit_recovers_known_constants_from_an_exact_surface():
    N_e, N_d = _grid()
    fit = fit_ghorbani(N_e, N_d, ghorbani_surface(TRUE, SIZES, SIZES), ref=(1e5, 1e5), n_bootstrap=0)
    for name in ("beta", "p_e", "p_d", "L_inf"):
        assert getattr(fit.law, name) == pytest.approx(getattr(TRUE, name), rel=1e-4), name
    assert np.max(np.abs(fit.residuals)) < 1e-6
    assert fit.identified


def test_noisy_surface_intervals_cover_the_truth_and_the_reference_only_rescales_beta():
    N_e, N_d = _grid()
    loss = ghorbani_surface(TRUE, SIZES, SIZES, noise=0.002, seed=1)
    fit = fit_ghorbani(N_e, N_d, loss, ref=(1e5, 1e5), n_bootstrap=40)
    for name in ("p_e", "p_d", "L_inf"):
        est = fit.estimates[name]
        assert est.lo <= getattr(TRUE, name) <= est.hi, (name, est)
    assert fit.identified, fit.unidentified
    moved = fit_ghorbani(N_e, N_d, loss, ref=(1e4, 1e6), n_bootstrap=0)
    assert moved.law.p_e == pytest.approx(fit.law.p_e, abs=1e-4)
    assert moved.law.loss(N_e, N_d) == pytest.approx(fit.law.loss(N_e, N_d), rel=1e-5)
    assert "p_e" in fit.summary() and "N_e" in str(fit.law)


def test_the_report_says_why_flat_or_one_sided_data_cannot_identify_the_exponents():
    N_e, N_d = _grid()
    flat = fit_ghorbani(N_e, N_d, np.full(len(N_e), 0.64) * (1 + 1e-5 * np.arange(len(N_e))), n_bootstrap=0)
    assert not flat.identified and any("same loss" in why for why in flat.unidentified)
    one_side = fit_ghorbani(np.full(6, 3e4), np.geomspace(1e4, 1e6, 6), TRUE.loss(3e4, np.geomspace(1e4, 1e6, 6)),
                            n_bootstrap=0)
    assert any("N_e takes a single value" in why for why in one_side.unidentified)
    assert "cannot identify" in one_side.summary()
    rising = GhorbaniLaw(beta=0.8, p_e=-0.2, p_d=0.45, L_inf=1.2, N_e_ref=1e5, N_d_ref=1e5)
    worse = fit_ghorbani(*_grid(), ghorbani_surface(rising, SIZES, SIZES), n_bootstrap=0)
    assert worse.law.p_e == pytest.approx(-0.2, abs=1e-3)
    assert any("p_e = -0.2 <= 0: the loss does not fall as the encoder grows" in why for why in worse.unidentified)


def test_bad_points_are_refused_where_they_enter():
    with pytest.raises(ValueError, match="finite and > 0"):
        fit_ghorbani([1e4, -1, 3e4, 4e4, 5e4], [1e4] * 5, [1.0] * 5)
    with pytest.raises(ValueError, match="cannot determine"):
        fit_ghorbani([1e4, 2e4, 3e4], [1e4, 2e4, 3e4], [1.0, 0.9, 0.8])
    with pytest.raises(ValueError, match="reference sizes"):
        fit_ghorbani(*_grid(), ghorbani_surface(TRUE, SIZES, SIZES), ref=(0.0, 1e5))
