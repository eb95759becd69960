"""Functional forms, published constants and compute-optimal allocation."""

import numpy as np
import pytest

from lm.scaling.laws import (CHINCHILLA, CHINCHILLA_UNROUNDED, KAPLAN, KAPLAN_L_C, KAPLAN_N_OPT,
                             PF_DAY, ChinchillaLaw, KaplanLaw, OffsetPowerLaw, PowerLaw,
                             kaplan_optimal, optimal_allocation, six_n)

BUDGETS = np.array([1e18, 3.7e20, 5.76e23, 1e26])


def test_chinchilla_form_and_log_parameterisation():
    law = ChinchillaLaw(E=1.5, A=400.0, B=2000.0, alpha=0.3, beta=0.4)
    assert law.loss(1e9, 2e10) == pytest.approx(1.5 + 400 * 1e9 ** -0.3 + 2000 * 2e10 ** -0.4, rel=1e-14)
    back = ChinchillaLaw.from_log(*law.theta)
    np.testing.assert_allclose([back.E, back.A, back.B, back.alpha, back.beta], [1.5, 400, 2000, 0.3, 0.4],
                               rtol=1e-14)
    # Broadcasting: [3] x [2, 1] -> [2, 3]
    assert law.loss(np.array([1e8, 1e9, 1e10]), np.array([[1e9], [1e10]])).shape == (2, 3)


def test_published_exponents():
    # Chinchilla's rounded parameters give a = 0.28 / 0.62; the unrounded ones 0.4565.
    assert round(CHINCHILLA.a, 3) == 0.452
    assert CHINCHILLA_UNROUNDED.a == pytest.approx(0.4565, abs=5e-5)
    assert CHINCHILLA.a + CHINCHILLA.b == pytest.approx(1.0)


@pytest.mark.parametrize("law", [CHINCHILLA, CHINCHILLA_UNROUNDED,
                                 ChinchillaLaw(E=1.8, A=480.0, B=2100.0, alpha=0.35, beta=0.37),
                                 ChinchillaLaw(E=0.5, A=50.0, B=9000.0, alpha=0.6, beta=0.2)])
def test_closed_form_matches_numerical_under_6nd(law):
    n_closed, d_closed = law.optimal(BUDGETS)
    n_num, d_num = optimal_allocation(law, BUDGETS, six_n)
    np.testing.assert_allclose(n_num, n_closed, rtol=1e-6)
    np.testing.assert_allclose(d_num, d_closed, rtol=1e-6)
    np.testing.assert_allclose(6 * n_closed * d_closed, BUDGETS, rtol=1e-12)


def test_closed_form_is_the_minimum_along_the_budget():
    law = CHINCHILLA
    c = 5.76e23
    n_opt, d_opt = law.optimal(c)
    N = n_opt * np.exp(np.linspace(-0.5, 0.5, 2001))
    losses = law.loss(N, c / (6 * N))
    assert abs(np.log(N[np.argmin(losses)] / n_opt)) <= 0.5 / 1000 + 1e-12
    assert law.optimal_loss(c) == pytest.approx(losses.min(), rel=1e-9)
    assert law.tokens_per_parameter(c) == pytest.approx(d_opt / n_opt)


def test_numerical_allocation_for_another_flop_convention():
    # 6N plus a fixed attention cost per token (e.g. 6 * n_layer * d_model * ctx).
    f = lambda n: 6.0 * n + 6.0 * 24 * 2048 * 4096
    law = CHINCHILLA
    c = 1e21
    n_opt, d_opt = law.optimal(c, f)
    assert d_opt == pytest.approx(c / f(n_opt), rel=1e-12)
    # A minimum along the budget: neighbours on either side are worse.
    for eps in (1e-3, -1e-3):
        n = n_opt * np.exp(eps)
        assert law.loss(n, c / f(n)) > law.loss(n_opt, d_opt)
    # The extra per-token cost makes tokens dearer: fewer tokens than under 6ND.
    assert d_opt < law.optimal(c)[1]


def test_allocation_rejects_bad_budgets():
    with pytest.raises(ValueError, match="positive and finite"):
        optimal_allocation(CHINCHILLA, [1e20, -1.0], six_n)


def test_kaplan_forms():
    law = KAPLAN
    N, D = 1e9, 1e10
    expected = ((law.N_c / N) ** (law.alpha_N / law.alpha_D) + law.D_c / D) ** law.alpha_D
    assert law.loss(N, D) == pytest.approx(expected, rel=1e-14)
    # Limits: infinite data -> L(N) = (N_c/N)^alpha_N; infinite model -> L(D) = (D_c/D)^alpha_D.
    assert law.loss(N, 1e300) == pytest.approx((law.N_c / N) ** law.alpha_N, rel=1e-10)
    assert law.loss(1e300, D) == pytest.approx((law.D_c / D) ** law.alpha_D, rel=1e-10)
    assert KaplanLaw(*[1.0] * 4).theta.shape == (4,)
    # L(C_min) with C in FLOPs: at C = C_c the loss is 1.
    assert KAPLAN_L_C.loss(3.1e8 * PF_DAY) == pytest.approx(1.0)
    # N_opt = 1.3e9 at one PF-day, and D follows from C = 6ND.
    assert KAPLAN_N_OPT(PF_DAY) == pytest.approx(1.3e9)
    n, d = kaplan_optimal(1e22)
    assert 6 * n * d == pytest.approx(1e22)


def test_offset_and_plain_power_laws():
    law = OffsetPowerLaw(E=1.7, K=1e3, gamma=0.15)
    assert law.loss(1e20) == pytest.approx(1.7 + 1e3 * 1e20 ** -0.15)
    assert PowerLaw(G=0.1, a=0.5)(1e20) == pytest.approx(1e9)
