"""Chinchilla's Approaches 1, 2, 3 from one table; Chinchilla's IsoFLOP data; bad tables."""


import numpy as np
import pandas as pd
import pytest

from lm.scaling.approaches import approach3, extrapolation, fit_approaches
from lm.scaling.envelope import approach1
from lm.scaling.isoflop import approach2
from lm.scaling.laws import ChinchillaLaw
from lm.scaling.results import curves_from_column, group_budgets, prepare_results

TRUE = ChinchillaLaw(E=1.8, A=480.0, B=2100.0, alpha=0.35, beta=0.37)


def idealised_curves(law, sizes, c_max=1e21):
    """Runs whose loss at every logged token count t is law(N, t) (a run per size)."""
    rows = []
    for k, n in enumerate(sizes):
        t = np.geomspace(1e8, c_max / (6 * n), 60)
        rows.append(pd.DataFrame({"run": f"r{k}", "tokens": t, "loss": law.loss(n, t)}))
    curves = pd.concat(rows, ignore_index=True)
    last = curves.groupby("run", sort=False).tail(1)
    results = pd.DataFrame({"run": last["run"].to_numpy(), "N": sizes, "D": last["tokens"].to_numpy(),
                            "loss": last["loss"].to_numpy()})
    return results, curves


def test_approach2_reproduces_chinchillas_exponent(chinchilla_isoflops):
    """Chinchilla fitted every point of each IsoFLOP: window=None reproduces their a."""
    with pytest.warns(UserWarning, match=r"budget 1e\+20.*outside the sizes its parabola used"):
        a2 = approach2(chinchilla_isoflops, n_bootstrap=300, seed=0, window=None)
    a = a2.fits.estimates["a"]
    # Hoffmann et al. 2022, Table 2: a = 0.49 (0.462, 0.534) for Approach 2.
    assert a.value == pytest.approx(0.49, abs=0.015)
    assert a.lo < 0.49 < a.hi
    # The tokens column of this extraction is C/(6N), so b read from it is 1 - a.
    assert a2.d_source.startswith("data") and a2.fits.estimates["b"].value == pytest.approx(1 - a.value, abs=1e-6)
    assert len(a2.isoflops) == 9 and a2.isoflops["inside"].sum() == 8


def test_approach2_recovers_a_known_law(make_results):
    a2 = approach2(make_results(TRUE), n_bootstrap=50)
    assert a2.fits.n_opt.a == pytest.approx(TRUE.a, abs=0.005)
    n_true, _ = TRUE.optimal(a2.isoflops["budget"].to_numpy())
    np.testing.assert_allclose(a2.isoflops["N_opt"], n_true, rtol=0.03)
    assert a2.isoflops["inside"].all()


def test_approach2_warns_and_can_drop_off_centre_budgets(make_results):
    df = make_results(TRUE, budgets=(1e18, 1e19, 1e20, 1e21))
    shift = df["budget"] == 1e21
    df.loc[shift, "N"] *= 20.0  # all sizes far above the optimum
    df.loc[shift, "D"] = df.loc[shift, "C"] / (6 * df.loc[shift, "N"])
    df.loc[shift, "loss"] = TRUE.loss(df.loc[shift, "N"], df.loc[shift, "D"])
    with pytest.warns(UserWarning, match=r"budget 1e\+21"):
        a2 = approach2(df, n_bootstrap=10)
    assert not a2.isoflops.set_index("budget").loc[1e21, "inside"]
    with pytest.warns(UserWarning):
        dropped = approach2(df, n_bootstrap=10, drop_off_centre=True)
    assert 1e21 not in dropped.isoflops["budget"].tolist() and dropped.skipped


def test_approach2_needs_two_budgets(make_results):
    with pytest.raises(ValueError, match="at least 2 IsoFLOP budgets"):
        approach2(make_results(TRUE, budgets=(1e20,)), n_bootstrap=10)


def test_approach1_envelope_of_curves_recovers_a_known_law():
    results, curves = idealised_curves(TRUE, np.geomspace(3e7, 3e10, 40))
    a1 = approach1(results, curves, n_bootstrap=50, n_grid=300)
    # The envelope picks the best of 40 discrete sizes (5.7% apart), so N_opt is quantised.
    assert a1.fits.n_opt.a == pytest.approx(TRUE.a, abs=0.005)
    assert a1.source == "curves" and len(a1.envelope) > 100
    # The same curves given as a column of (tokens, loss) pairs give the same envelope.
    col = results.assign(curve=[g[["tokens", "loss"]].to_numpy() for _, g in curves.groupby("run", sort=False)])
    a1b = approach1(col, n_bootstrap=50, n_grid=300)
    pd.testing.assert_frame_equal(a1.envelope, a1b.envelope)
    assert len(curves_from_column(col)) == len(curves)


def test_approach1_without_curves(make_results):
    df = make_results(TRUE)
    with pytest.raises(ValueError, match="needs per-run loss curves"):
        approach1(df)
    a1 = approach1(df, final_points=True, n_bootstrap=20)
    assert a1.source.startswith("final points")


def test_fit_approaches_all_three_and_tables(synthetic_approaches):
    iso, res = synthetic_approaches
    assert res.approach1 is None and any("Approach 1 skipped" in n for n in res.notes)
    assert res.approach2 is not None and res.approach3 is not None
    law = res.approach3.law
    # 0.5% noise on 36 runs: the exponents land within a few hundredths.
    assert law.alpha == pytest.approx(TRUE.alpha, abs=0.03) and law.beta == pytest.approx(TRUE.beta, abs=0.03)
    assert res.approach2.fits.n_opt.a == pytest.approx(TRUE.a, abs=0.02)
    table = res.allocation_table()
    assert list(table["approach"].unique()) == ["Approach 2", "Approach 3", "frontier (least squares)"]
    assert res.shape == "runs" and res.frontier is not None
    row = table[(table["approach"] == "Approach 3") & (table["C"] == 5.76e23)].iloc[0]
    assert row["N_lo"] <= row["N_opt"] <= row["N_hi"] and row["D_lo"] <= row["D_opt"] <= row["D_hi"]
    assert row["N_opt"] == pytest.approx(law.optimal(5.76e23)[0], rel=1e-12)
    text = res.summary()
    assert "Approach 3" in text and "5.76e+23" in text and "a =" in text
    assert set(res.exponents_table()["approach"]) == {"Approach 2", "Approach 3", "frontier (least squares)"}
    with pytest.raises(ValueError, match="needs per-run loss curves"):
        fit_approaches(iso, n_bootstrap=2, approaches=(1,), strict=True)


def test_approach3_recovers_a_noise_free_law(make_results):
    res = approach3(make_results(TRUE), n_bootstrap=0, budgets=(5.76e23,))
    law = res.law
    np.testing.assert_allclose([law.E, law.alpha, law.beta], [TRUE.E, TRUE.alpha, TRUE.beta], rtol=1e-4)
    n_true, d_true = TRUE.optimal(5.76e23)
    assert res.estimates["N_opt@5.76e+23"].value == pytest.approx(n_true, rel=1e-3)


def test_other_flop_convention_changes_the_allocation(make_results):
    f = lambda n: 6.0 * n + 2.4e9  # 6N plus a fixed per-token attention cost
    res = approach3(make_results(TRUE), flops_per_token=f, n_bootstrap=8, budgets=(1e22,))
    n, d = res.estimates["N_opt@1e+22"].value, res.estimates["D_opt@1e+22"].value
    assert d == pytest.approx(1e22 / f(n), rel=1e-10)
    assert d < res.law.optimal(1e22)[1]
    boot = res.bootstrap
    np.testing.assert_allclose(boot.d_opt[:, 0], 1e22 / f(boot.n_opt[:, 0]), rtol=1e-10)


def test_extrapolation_to_the_held_out_budget(make_results):
    ex = extrapolation(make_results(TRUE))
    assert ex.held_out_budget == 1e21 and ex.observed_kind == "parabola minimum"
    assert ex.n_train == 27
    assert abs(ex.relative_error) < 2e-3
    assert ex.predicted_N_opt == pytest.approx(TRUE.optimal(1e21)[0], rel=1e-3)


@pytest.mark.slow
def test_extrapolation_on_chinchillas_isoflops(chinchilla_isoflops):
    real = extrapolation(chinchilla_isoflops)
    assert real.held_out_budget == 3e21 and abs(real.relative_error) < 0.03
    assert "Extrapolation to C = 3e+21" in real.summary()


def test_results_table_validation():
    good = pd.DataFrame({"run": ["a", "b"], "N": [1e8, 2e8], "C": [6e17, 1.2e18], "loss": [3.0, 2.9]})
    df = prepare_results(good)
    np.testing.assert_allclose(df["D"], [1e9, 1e9])
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['loss'\]"):
        prepare_results(good.drop(columns=["loss"]))
    with pytest.raises(ValueError, match="D or C"):
        prepare_results(good.drop(columns=["C"]))
    with pytest.raises(ValueError, match=r"'N' must be finite and > 0; bad rows: b \(1 rows\)"):
        prepare_results(good.assign(N=[1e8, 0.0]))
    with pytest.raises(ValueError, match=r"'loss' must be finite and > 0; bad rows: a"):
        fit_approaches(good.assign(loss=[np.nan, 2.9]))


def test_group_budgets_clusters_log_flops():
    C = np.array([9.9e18, 1.0e19, 1.02e19, 3e19, 3.1e19, 1e20])
    labels = group_budgets(C)
    assert len(np.unique(labels)) == 3
    assert labels[0] == labels[2] and labels[3] == labels[4] != labels[5]
