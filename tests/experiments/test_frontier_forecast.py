"""The frontier-law forecast of a stage (experiments.frontier_forecast): its fit, its interval, and
its use by the preregistered forecasts from 3 earlier budgets on."""

import numpy as np
import pytest

from experiments.frontier_forecast import fit_minima, forecast_minima, frontier_forecast, walk_forward_z

BUDGETS = np.array([1.6e10, 4e10, 1e11, 2.5e11, 6.3e11])


def law(c, E=1.34, K=9.0e3, gamma=0.42):
    return E + K * np.asarray(c, float) ** -gamma


def test_three_minima_of_a_law_give_the_law_back_and_a_batch_fits_row_by_row():
    E, K, gamma = fit_minima(np.log(BUDGETS[:3]), law(BUDGETS[:3]))
    assert E == pytest.approx(1.34, rel=1e-4) and gamma == pytest.approx(0.42, rel=1e-4)
    assert forecast_minima(np.log(BUDGETS[:3]), law(BUDGETS[:3]), np.log(1.6e12)) == pytest.approx(law(1.6e12), rel=1e-5)
    rng = np.random.default_rng(0)
    batch = law(BUDGETS)[None] * (1 + 0.01 * rng.standard_normal((6, len(BUDGETS))))     # [R, B]
    Eb, Kb, gb = fit_minima(np.log(BUDGETS), batch)
    for r in range(6):                        # the batch's grid fit agrees with each row's refined fit
        e, k, g = fit_minima(np.log(BUDGETS), batch[r])
        assert gb[r] == pytest.approx(g, rel=0.011) and Eb[r] == pytest.approx(e, abs=0.02)


def noisy_draws(points, sigma, R=200, seed=1):
    """[R, B, 2] re-observed minima: the points' losses times lognormal noise, N kept."""
    rng = np.random.default_rng(seed)
    draws = np.repeat(points[None], R, axis=0)
    draws[:, :, 0] *= np.exp(sigma * rng.standard_normal((R, len(points))))
    return draws


def test_the_forecast_of_a_law_is_inside_an_interval_around_its_point():
    points = np.stack([law(BUDGETS), 3e3 * (BUDGETS / 1e10) ** 0.5], axis=1)       # [B, 2]: loss, N
    f = frontier_forecast(BUDGETS, points, noisy_draws(points, 0.005), 1.6e12, level=0.9)
    truth = law(1.6e12)
    assert f["loss"] == pytest.approx(truth, rel=1e-4) and f["lo"] < truth < f["hi"]
    assert f["n_opt"] == pytest.approx(3e3 * 160 ** 0.5, rel=1e-6) and f["n_lo"] <= f["n_opt"] <= f["n_hi"]
    assert f["scale"] == pytest.approx(1.0)                  # a law the data follow is never widened
    again = frontier_forecast(BUDGETS, points, noisy_draws(points, 0.005), 1.6e12, level=0.9)
    assert again == f                                        # seeded: the same numbers
    bare = frontier_forecast(BUDGETS, points, np.zeros((0, len(BUDGETS), 2)), 1.6e12, level=0.9)
    assert bare["loss"] == f["loss"] and np.isnan(bare["lo"]) and np.isnan(bare["hi"])
    with pytest.raises(ValueError, match=">= 3 earlier budgets"):
        frontier_forecast(BUDGETS[:2], points[:2], noisy_draws(points[:2], 0.005), 1e11, level=0.9)


def test_a_law_that_misses_its_later_budgets_gets_a_wider_interval():
    """Minima that fall faster than the first three show: the frontier walked forward misses them by
    many bootstrap spreads, and the forecast's interval is widened by those errors."""
    bent = law(BUDGETS) - np.array([0, 0, 0, 0.04, 0.10])
    points = np.stack([bent, 3e3 * (BUDGETS / 1e10) ** 0.5], axis=1)
    draws = noisy_draws(points, 0.002)
    noise = np.log(draws[:, -1, 0] / np.median(draws[:, -1, 0]))
    z = walk_forward_z(np.log(BUDGETS), points[:, 0], draws[:, :, 0], noise)
    assert len(z) == 3 and np.all(z < -3)                    # fit on 3 -> 4, 5; fit on 4 -> 5
    f = frontier_forecast(BUDGETS, points, draws, 1.6e12, level=0.9)
    straight = frontier_forecast(BUDGETS, np.stack([law(BUDGETS), points[:, 1]], 1),
                                 noisy_draws(np.stack([law(BUDGETS), points[:, 1]], 1), 0.002), 1.6e12, level=0.9)
    assert f["scale"] > 3 and np.log(f["hi"] / f["lo"]) > 2 * np.log(straight["hi"] / straight["lo"])


def test_the_runs_noise_draws_move_a_budgets_minimum_by_its_shared_shift_too():
    """A budget's runs share one data stream, so its minimum moves by a shift its parabola's residuals
    cannot see: the draws spread each minimum by at least COMMON_NOISE x the residuals' scale."""
    import pandas as pd

    from experiments import forecasts

    rows = []
    for c, base in ((1e10, 2.3), (4e10, 1.9)):
        for i, x in enumerate(np.linspace(-1.0, 1.0, 5)):
            n = 1e4 * np.exp(x)
            rows.append(dict(run=f"{c:g}-{i}", N=n, D=c / (6 * n), C=c, budget=c, shape=str(i),
                             loss=base + 0.05 * x ** 2 + 0.01 * (-1) ** i))
    table = pd.DataFrame(rows)
    draws = forecasts.minima_noise_draws(table, [1e10, 4e10], None, 300, seed=0)     # [R, B, 2]
    assert draws.shape[1:] == (2, 2) and len(draws) > 250
    fitted_scatter = 0.01 * np.sqrt(5 / 2)      # 5 residuals of +-0.01 over 2 degrees of freedom a budget
    spread = draws[:, :, 0].std(axis=0)
    assert np.all(spread > 0.9 * forecasts.COMMON_NOISE * fitted_scatter)
    same = forecasts.minima_noise_draws(table, [1e10, 4e10], None, 300, seed=0)
    np.testing.assert_array_equal(same, draws)


def test_with_a_known_floor_two_minima_give_the_excess_law_back():
    """E = the data's exact entropy floor leaves 2 parameters: 2 minima give the law, a batch fits
    row by row, and a minimum at or below the floor fails with the reason."""
    from experiments.frontier_forecast import forecast_excess

    log_c = np.log(BUDGETS)
    assert forecast_excess(log_c[:2], law(BUDGETS[:2]), np.log(1.6e12), 1.34) == pytest.approx(law(1.6e12), rel=1e-9)
    assert forecast_minima(log_c, law(BUDGETS), np.log(1.6e12), floor=1.34) == pytest.approx(law(1.6e12), rel=1e-9)
    batch = np.stack([law(BUDGETS), law(BUDGETS, E=1.30), np.full(len(BUDGETS), 1.2)])
    got = forecast_excess(log_c, batch, np.log(1.6e12), 1.34)
    assert got[0] == pytest.approx(law(1.6e12)) and got[1] != pytest.approx(law(1.6e12, E=1.30))
    assert np.isnan(got[2])                                   # no excess above the floor: no law
    points = np.stack([law(BUDGETS[:2]), 3e3 * (BUDGETS[:2] / 1e10) ** 0.5], axis=1)
    f = frontier_forecast(BUDGETS[:2], points, noisy_draws(points, 0.005), 1e11, level=0.9, floor=1.34)
    assert f["loss"] == pytest.approx(law(1e11), rel=1e-9) and f["lo"] < law(1e11) < f["hi"]
    assert (f["E"], f["gamma"]) == (1.34, pytest.approx(0.42))
    with pytest.raises(ValueError, match="at or below the entropy floor 1.9"):
        frontier_forecast(BUDGETS[:2], points, noisy_draws(points, 0.005), 1e11, level=0.9, floor=1.9)
    with pytest.raises(ValueError, match=">= 2 earlier budgets"):
        frontier_forecast(BUDGETS[:1], points[:1], noisy_draws(points[:1], 0.005), 1e11, level=0.9, floor=1.34)


def test_a_stage_forecast_uses_the_floor_from_two_budgets_and_fits_e_without_one():
    """The preregistered forecast (forecasts.predict_optimum): with the data's floor, the excess law
    from 2 earlier budgets on; without (text), Approach 3 until 3 budgets allow the frontier law."""
    import pandas as pd

    from experiments import forecasts

    rows = []
    for c in (1.6e10, 4e10):
        n_opt = 1.2e4 * (c / 1.6e10) ** 0.5
        for i, x in enumerate(np.linspace(-1.0, 1.0, 5)):
            n = n_opt * np.exp(x)
            rows.append(dict(run=f"{c:g}-{i}", N=n, D=c / (6 * n), C=c, budget=c, shape=str(i),
                             loss=law(c) + 0.05 * x ** 2 + 0.004 * (-1) ** i))
    table = pd.DataFrame(rows)
    p = forecasts.predict_optimum(table, 1e11, None, n_bootstrap=40, floor=1.34)
    assert p.approach == forecasts.EXCESS_LAW and p.fitted_budgets == (1.6e10, 4e10)
    assert p.loss == pytest.approx(law(1e11), rel=0.01) and p.lo < p.loss < p.hi
    assert p.n_opt == pytest.approx(1.2e4 * (1e11 / 1.6e10) ** 0.5, rel=0.05)
    assert forecasts.predict_optimum(table, 1e11, None, n_bootstrap=10).approach != forecasts.EXCESS_LAW
