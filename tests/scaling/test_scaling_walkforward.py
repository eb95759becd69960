"""Walk-forward model choice, the frontier law, table shapes and aimed forecasts (issue 22)."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import dataclasses

from lm.scaling.aim import COLUMNS, forecast_rows, holdout
from lm.scaling.calibrate import PRIOR, horizon_weights, interval_scale, standardized
from lm.scaling.approaches import fit_approaches
from lm.scaling.candidates import CANDIDATES, Candidate, NAIVE
from lm.scaling.cli import main
from lm.scaling.frontier import LS_DELTA
from lm.scaling.laws import ChinchillaLaw
from lm.scaling.results import table_shape
from lm.scaling.pick import a3_checks
from lm.scaling.walkforward import choose, origins, pick_candidate, score_table, split_data

LAW = ChinchillaLaw(E=1.8, A=480.0, B=2100.0, alpha=0.35, beta=0.37)
FAST = (Candidate("a3", 1e-3, "vpnls"), Candidate("a3", LS_DELTA, "vpnls"), NAIVE, Candidate("frontier", 1e-3))


def runs_table(seed=0, noise=0.005, budgets=np.geomspace(1e18, 1e22, 7), sizes=7):
    rng = np.random.default_rng(seed)
    rows = []
    for c in budgets:
        n_opt, _ = LAW.optimal(c)
        for n in n_opt * np.geomspace(1 / 4, 4, sizes):
            d = c / (6 * n)
            rows.append(dict(N=n, D=d, budget=c, loss=LAW.loss(n, d) * np.exp(noise * rng.standard_normal())))
    return pd.DataFrame(rows)


def minima_table(seed=0, noise=0.003, budgets=np.geomspace(1e18, 1e21, 8)):
    rng = np.random.default_rng(seed)
    n, d = LAW.optimal(budgets)
    loss = LAW.optimal_loss(budgets) * np.exp(noise * rng.standard_normal(len(budgets)))
    return pd.DataFrame(dict(C=budgets, loss=loss, N=n, D=d))


def test_table_shape_auto_and_explicit():
    assert table_shape(runs_table()) == "runs" and table_shape(minima_table()) == "minima"
    assert table_shape(minima_table()[["C", "loss"]]) == "minima"
    assert table_shape(runs_table(), "minima") == "minima"
    with pytest.raises(ValueError, match="table shape 'wide'"):
        table_shape(runs_table(), "wide")


def test_origins_leave_three_budgets_and_keep_the_last():
    b = np.geomspace(1e18, 1e22, 20)
    o = origins(b, 3, 6)
    assert len(o) == 6 and o[0] == b[2] and o[-1] == b[-2]
    assert origins(b[:5], 3, None) == [b[2], b[3]]


def test_minima_table_skips_approach3_and_the_frontier_forecasts_within_the_noise():
    t = minima_table()
    res = fit_approaches(t, n_bootstrap=50, budgets=(1e23,))
    assert res.shape == "minima" and res.approach3 is None and res.approach2 is None
    assert any(name == "Approach 3" and "one curve" in why for name, why in res.failed)
    assert res.frontier is not None and res.frontier.law.gamma > 0
    ch = choose(t, candidates=FAST)
    assert ch.chosen.startswith("frontier")
    assert "not fitted: Approach 3 needs a per-run table" in ch.summary()
    f = ch.forecast([1e22, 1e23])
    truth = LAW.optimal_loss(np.array([1e22, 1e23]))
    assert np.all(np.abs(f["loss"] / truth - 1) < 0.02)  # 0.3 % noise on 8 minima, 10-100x beyond
    assert np.all((f["lo"] < truth) & (truth < f["hi"]))
    assert np.all(np.abs(np.log(f["N"] / LAW.optimal(np.array([1e22, 1e23]))[0])) < 0.2)
    from lm.scaling.frontier_plot import plot_frontier
    fig = plot_frontier(res.frontier)
    labels = fig.axes[0].get_legend_handles_labels()[1]
    assert any(s.startswith("frontier (least squares)") for s in labels) and any("interval" in s for s in labels)


def test_choose_is_deterministic_and_prints_the_baseline():
    t = runs_table(seed=3, budgets=np.geomspace(1e18, 1e21, 5))
    a, b = choose(t, candidates=FAST), choose(t, candidates=FAST)
    pd.testing.assert_frame_equal(a.table, b.table)
    assert a.chosen == b.chosen and a.reason == b.reason
    text = a.summary()
    assert "(naive baseline)" in text and "<- chosen" in text and "choice:" in text
    assert set(a.table["candidate"]) == {c.name for c in FAST}
    assert a.n_opt(1e22)[0] == pytest.approx(LAW.optimal(1e22)[0], rel=0.3)


def test_a3_champion_is_the_approach3_candidate_with_the_lowest_later_error():
    """Choice.a3_champion: among Approach 3's candidates (fitter x Huber delta) the one whose
    forecasts of later optima and runs missed least (pooled mean |relative error|); None where the
    table has no Approach 3 candidate (a minima table)."""
    ch = choose(runs_table(budgets=np.geomspace(1e18, 1e21, 5), sizes=5), candidates=FAST)
    a3 = ch.predictions[ch.predictions["candidate"].str.startswith("Approach 3")]
    errors = a3.assign(e=a3["rel_error"].abs()).groupby("candidate")["e"].mean()
    assert len(errors) == 2 and set(a3.groupby("candidate")["origin"].nunique()) == {2}   # same splits
    champ = ch.a3_champion()
    assert champ.kind == "a3" and champ.name == errors.idxmin(), (champ, errors)
    assert choose(minima_table(), candidates=FAST).a3_champion() is None


def test_holdout_and_forecast_rows():
    t = runs_table(seed=1, budgets=np.geomspace(1e18, 1e21, 6))
    data = split_data(t)
    train, held = holdout(data, k=2)
    assert train["budget"].max() < held.observed["budget"].min() and len(held.observed) == 2
    ch = choose(train, shape="runs", candidates=FAST)
    rows = forecast_rows(ch, held, predict=[1e22])
    assert list(rows.columns) == COLUMNS
    assert set(rows["kind"]) == {"optimum", "run"}
    assert rows.loc[rows["chosen"], "approach"].nunique() == 1
    assert rows.loc[rows["budget"] == 1e22, "observed"].isna().all()
    with pytest.raises(ValueError, match="leaves 2 budgets to fit"):
        holdout(data, above=1e19)


def near_best_and_coverage(make, cands):
    """Over 20 seeds: how often the chosen law's error on 2 held-out budgets is within 1.5x of the
    best candidate's, and the coverage of the chosen law's 90 % intervals of the held-out optima."""
    near, covered = 0, []
    for seed in range(20):
        data = split_data(make(seed=seed))
        train, held = holdout(data, k=2)
        ch = choose(train, shape=data.shape, candidates=cands, max_splits=3)
        rows = forecast_rows(ch, held)
        opt = rows[rows["kind"] == "optimum"].assign(err=lambda r: (r["predicted"] / r["observed"] - 1).abs())
        err = opt.groupby("approach")["err"].mean()
        near += err[ch.chosen] <= 1.5 * err.min() + 1e-12
        c = opt[opt["chosen"]]
        covered += list((c["lo"] <= c["observed"]) & (c["observed"] <= c["hi"]))
    return near, float(np.mean(covered))


@pytest.mark.slow
def test_walk_forward_choice_is_near_the_best_and_covers_minima():
    near, coverage = near_best_and_coverage(
        lambda seed: minima_table(seed=seed, budgets=np.geomspace(1e18, 1e21, 10)), FAST)
    assert near >= 16 and 0.8 <= coverage <= 0.97, (near, coverage)  # measured: 18 of 20, 0.825 (linearised: 0.80)


@pytest.fixture(scope="module")
def runs_near_and_coverage():
    return near_best_and_coverage(runs_table, CANDIDATES)


@pytest.mark.slow
def test_walk_forward_intervals_cover_runs_tables(runs_near_and_coverage):
    coverage = runs_near_and_coverage[1]
    assert 0.8 <= coverage <= 0.97, coverage  # measured: 0.95


@pytest.mark.slow
def test_walk_forward_choice_is_near_the_best_on_runs_tables(runs_near_and_coverage):
    # measured: 16 of 20 (14 when the families were compared on the one shared optimum forecast; pick.py)
    assert runs_near_and_coverage[0] >= 16, runs_near_and_coverage


def test_interval_scale_is_shrunk_toward_one_and_follows_the_errors():
    assert interval_scale([]) == 1.0 and interval_scale([np.nan, np.inf]) == 1.0
    assert interval_scale(np.random.default_rng(0).standard_normal(400)) == pytest.approx(1.0, abs=0.1)
    assert interval_scale([10.0, -10.0, 10.0]) == pytest.approx(np.sqrt((PRIOR + 300) / (PRIOR + 3)))
    assert interval_scale([0.0] * 50) < 0.25  # a law far better than its spread says gets narrower
    # weighted by the squared distance beyond the data: the farther forecast's error counts 4x
    w = horizon_weights([1e19, 1e19], [1e20, 1e21])
    assert w == pytest.approx([(1 / 1.5) ** 2, (2 / 1.5) ** 2])  # h = 1 and 2 dex, mean 1.5
    assert interval_scale([0.0, 3.0], w) == pytest.approx(np.sqrt((PRIOR + w[1] * 9) / (PRIOR + w.sum())))
    assert horizon_weights([1e20], [1e20]) == pytest.approx([1.0])
    # z: log error over the forecast's own log-space sd (half-width / t quantile), mapped to the normal
    q = stats.t.ppf(0.95, 200)
    z = standardized([np.e, 1 / np.e], [1.0, 1.0], [np.exp(q)] * 2, 0.9, 200)
    assert z == pytest.approx([1.0, -1.0], abs=0.01) and np.isnan(standardized([1.0], [1.0], [1.0], 0.9, 5)[0])
    # one dof: an error at the interval's end is at the normal's 95 % point, not 6.3 sd away
    assert standardized([np.exp(2.0)], [1.0], [np.exp(2.0)], 0.9, 1)[0] == pytest.approx(stats.norm.isf(0.05))
    assert standardized([np.exp(300.0)], [1.0], [np.e], 0.9, 10_000)[0] == 30.0  # tail probability 0: capped


def test_choice_intervals_are_scaled_by_the_walk_forward_errors():
    ch = choose(minima_table(seed=1, budgets=np.geomspace(1e18, 1e21, 8)), candidates=FAST[2:])
    p = ch.predictions[(ch.predictions["candidate"] == ch.chosen) & (ch.predictions["kind"] == "optimum")]
    w = horizon_weights(p["origin"], p["budget"])
    assert len(p) >= 3 and ch.model.scale == pytest.approx(max(1.0, interval_scale(p["z"], w))) and ch.model.scale > 1
    raw = dataclasses.replace(ch.model, scale=1.0)
    f, (loss, lo, hi) = ch.forecast([1e22]), raw.optimum([1e22])[:3]
    assert f["loss"][0] == pytest.approx(loss[0])
    assert np.log(f["hi"][0] / f["loss"][0]) == pytest.approx(ch.model.scale * np.log(hi[0] / loss[0]))
    assert "widened by its walk-forward errors" in ch.summary()


def _forecasts(name, errors):
    return pd.DataFrame(dict(candidate=name, origin=np.repeat([1e19, 1e20], [2, 1])[:len(errors)], kind="optimum",
                             budget=[1e20, 1e21, 1e21][:len(errors)], rel_error=errors, covered=1.0))


def test_the_naive_baseline_stays_unless_beaten_by_more_than_one_standard_error():
    huber = Candidate("frontier", 1e-3)
    cands = [NAIVE, huber]
    noisy = pd.concat([_forecasts(NAIVE.name, [0.010, 0.002, 0.004]), _forecasts(huber.name, [0.001, 0.009, 0.003])])
    table = score_table(noisy, {c.name: [] for c in cands}, cands, 2)
    name, why = pick_candidate(table, noisy, cands)
    assert name == NAIVE.name and "within 1 standard error" in why
    clear = pd.concat([_forecasts(NAIVE.name, [0.010, 0.012, 0.011]), _forecasts(huber.name, [0.002, 0.003, 0.001])])
    assert pick_candidate(table, clear, cands)[0] == huber.name
    # across families: the champions' mean error decides (Approach 3 has no naive to beat)
    a3 = Candidate("a3", LS_DELTA, "grid")
    both = pd.concat([noisy, _forecasts(a3.name, [0.001, 0.001, 0.001])])
    assert pick_candidate(table, both, cands + [a3])[0] == a3.name
    assert pick_candidate(table, noisy, [])[0] is None


def _runs(name, errors, z, origins=(1e19,), budgets=(1e20, 1e21)):
    """Run forecasts of `name`: len(origins) x len(budgets) groups of 3 runs with log errors `errors` [groups]."""
    rows = []
    for i, (o, b) in enumerate((o, b) for o in origins for b in budgets):
        for j in range(3):
            rows.append(dict(candidate=name, origin=o, kind="run", budget=b, N=1e8 * (j + 1), D=1e10, predicted=3.0,
                             observed=3.0 * np.exp(errors[i]), rel_error=np.expm1(errors[i]), z=z, covered=1.0))
    return pd.DataFrame(rows)


def test_approach3_checks_spread_and_bias_of_its_later_runs():
    ok, why = a3_checks(_runs("a", [0.01, -0.01], 1.0))
    assert ok and "within its spread" in why
    assert not a3_checks(_runs("a", [0.01, -0.01], 3.0))[0]  # sum z^2 = 54 over 6 runs
    one_sided = _runs("a", [-0.01] * 8, 0.5, origins=(1e18, 1e19), budgets=(1e20, 2e20, 4e20, 8e20))
    ok, why = a3_checks(one_sided)
    assert not ok and "on one side" in why
    assert a3_checks(_runs("a", [-0.01] * 4, 0.5))[0]  # 2 groups on one side: no evidence of bias
    assert not a3_checks(_runs("a", [0.0, 0.0], np.nan))[0]


def test_approach3_is_kept_over_one_lucky_frontier_forecast_when_its_runs_pass():
    a3 = Candidate("a3", LS_DELTA, "grid")
    opt = pd.concat([_forecasts(NAIVE.name, [0.004])[:1].assign(origin=1e20, budget=1e21),
                     _forecasts(a3.name, [0.006, 0.008, 0.007])])
    table = score_table(opt, {c.name: [] for c in (a3, NAIVE)}, (a3, NAIVE), 2)
    good = pd.concat([opt, _runs(a3.name, [0.003, -0.004], 0.8)])
    name, why = pick_candidate(table, good, [a3, NAIVE])
    assert name == a3.name and "passed its checks" in why
    biased = pd.concat([opt, _runs(a3.name, [0.01] * 8, 0.5, origins=(1e18, 1e19), budgets=(1e20, 2e20, 4e20, 8e20))])
    name, why = pick_candidate(table, biased, [a3, NAIVE])
    assert name == NAIVE.name and "failed a check" in why and "on one side" in why
