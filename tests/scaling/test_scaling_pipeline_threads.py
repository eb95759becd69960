"""lm-fit's pipeline runs the walk-forward beside the approaches' fits and compiles their programs
ahead, in background threads: the results are those of running each on its own."""

import warnings

import numpy as np
import pandas as pd
import pytest

from lm.scaling.approaches import fit_approaches
from lm.scaling.fitoptions import FitOptions
from lm.scaling.laws import ChinchillaLaw
from lm.scaling.pipeline import fit_and_forecast, offset_points, warning_lines
from lm.scaling.walkforward import choose

LAW = ChinchillaLaw(E=1.8, A=480.0, B=2100.0, alpha=0.35, beta=0.37)


def grid(budgets=np.geomspace(1e18, 1e21, 6), sizes=7, noise=0.005, seed=3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for c in budgets:
        for n in LAW.optimal(c)[0] * np.geomspace(1 / 4, 4, sizes):
            rows.append(dict(N=n, D=c / (6 * n), loss=LAW.loss(n, c / (6 * n)) * np.exp(noise * rng.standard_normal())))
    return pd.DataFrame(rows)


@pytest.mark.slow  # ~25 s on 2 cores: the walk-forward compiles its own programs
def test_walk_forward_beside_the_fits_gives_the_results_of_each_alone():
    table = grid()
    opts = FitOptions(approaches=(2, "frontier"), bootstrap=20, forecast=True)
    res, choice, rows, lines = fit_and_forecast(table, opts)
    alone = choose(table, shape="runs", max_splits=opts.max_splits, window=opts.window)
    assert choice.chosen == alone.chosen and lines[0] == alone.summary()
    pd.testing.assert_frame_equal(choice.table, alone.table)
    fits = fit_approaches(table, approaches=(2, "frontier"), n_bootstrap=20, budgets=res.budgets)
    assert res.frontier.estimates == fits.frontier.estimates
    assert res.approach2.isoflops.equals(fits.approach2.isoflops)


def test_offset_points_counts_the_frontier_minima_and_the_figures_points():
    table = grid()
    res = fit_approaches(table, approaches=(2, "frontier"), n_bootstrap=0)
    assert offset_points(table, "runs", FitOptions()) == (len(res.frontier.minima), 0)
    assert offset_points(table, "runs", FitOptions(), figure=True) == (len(res.frontier.minima),
                                                                       len(res.approach2.isoflops))
    few = grid(budgets=(1e18, 1e19, 1e20), sizes=5)   # 3 budgets: the figure fits the lowest-loss runs
    from lm.scaling.plotfits import lowest_loss_runs
    assert offset_points(few, "runs", FitOptions(), figure=True)[1] == len(lowest_loss_runs(
        6 * few["N"] * few["D"], few["loss"])[0])
    assert offset_points(table.head(5), "minima", FitOptions()) == (5, 0)


def test_warning_lines_are_distinct_and_sorted():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for m in ("b: second", "a: first", "b: second"):
            warnings.warn(m)
    assert warning_lines(caught) == ["Warning: a: first", "Warning: b: second"]
