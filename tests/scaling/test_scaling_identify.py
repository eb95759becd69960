"""Fits their data cannot identify say so ("unidentified: <reason>"), never a number; no fit's
exception escapes; lm-fit exits 0 when one approach fits and 2 (one line) when none can."""

import json
import warnings

import numpy as np
import pandas as pd
import pytest

from lm.scaling.approaches import fit_approaches
from lm.scaling.bootstrap import Estimate
from lm.scaling.cli import main
from lm.scaling.identify import COND_LIMIT, interval_reasons, jacobian_condition, value_reasons
from lm.scaling.laws import ChinchillaLaw

LAW = ChinchillaLaw(E=1.8, A=480.0, B=2100.0, alpha=0.35, beta=0.37)


def grid(budgets=np.geomspace(1e18, 1e21, 5), tilt=0.0, noise=0.003, seed=0):
    """IsoFLOP runs from LAW; tilt > 0 multiplies loss by (D / 1e9)^tilt (loss rising with data)."""
    rng = np.random.default_rng(seed)
    rows = []
    for c in budgets:
        n_opt, _ = LAW.optimal(c)
        for n in n_opt * np.geomspace(1 / 4, 4, 7):
            d = c / (6 * n)
            rows.append(dict(N=n, D=d, budget=c,
                             loss=LAW.loss(n, d) * (d / 1e9) ** tilt * np.exp(noise * rng.standard_normal())))
    return pd.DataFrame(rows)


def fit(df, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fit_approaches(df, n_bootstrap=20, budgets=(1e22,), **kw)


def test_value_and_interval_checks():
    assert value_reasons(dict(alpha=-0.1, beta=0.3, E=1.0)) == ["exponent alpha = -0.1 outside (0, 3]"]
    assert "E = 1.6e-16 is ~0" in value_reasons(dict(E=1.6e-16), min_loss=2.0)[0]
    assert value_reasons(dict(gamma=3.5))[0].startswith("exponent gamma = 3.5")
    pinned = {"a": Estimate(0.3, 0.2, -2.2e-16, 0.73)}
    assert interval_reasons(pinned) == ["a's interval [-2.2e-16, 0.73] reaches the bound 0"]
    assert interval_reasons({"a": Estimate(0.5, 0.01, 0.48, 0.52)}) == []


def test_jacobian_condition_flags_parameters_the_data_do_not_separate():
    x = np.linspace(0, 1, 10)
    assert jacobian_condition(lambda t: t[0] * x + t[1], np.array([1.0, 2.0])) < 10
    assert jacobian_condition(lambda t: (t[0] + t[1]) * x, np.array([1.0, 2.0])) > COND_LIMIT


def test_negative_exponent_is_one_line_and_the_others_report():
    res = fit(grid(tilt=0.08), approaches=(2, 3))
    assert res.approach3 is None and res.approach2 is not None
    (name, why), = [f for f in res.failed if f[0] == "Approach 3"]
    assert why.startswith("unidentified: exponent beta = -") and "\n" not in why
    assert "Approach 3 skipped: unidentified: exponent beta" in res.summary()


def test_negative_exponent_cli_exit_0(tmp_path, capsys):
    csv = tmp_path / "runs.csv"
    grid(tilt=0.08).to_csv(csv, index=False)
    assert main([str(csv), "--out", str(tmp_path / "o"), "--no-plots", "--bootstrap", "20", "--approaches", "2,3"]) == 0
    out = capsys.readouterr().out
    assert "Approach 3 skipped: unidentified: exponent beta" in out and "Approach 2 (" in out
    rec = json.loads((tmp_path / "o" / "fit.json").read_text())
    assert "Approach 3" not in rec["estimates"] and "Approach 2" in rec["estimates"]


def test_single_budget_is_unidentified_and_exit_2_with_one_line(tmp_path, capsys):
    one = grid(budgets=(1e20,))
    res = fit(one, approaches=(2, 3, "frontier"))
    reasons = dict(res.failed)
    assert reasons["Approach 3"].startswith("unidentified: 1 budget")
    assert "at least 2 IsoFLOP budgets" in reasons["Approach 2"] and "frontier law" in reasons
    csv = tmp_path / "one.csv"
    one.to_csv(csv, index=False)
    assert main([str(csv), "--out", str(tmp_path / "o"), "--no-plots", "--bootstrap", "20"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("lm-fit: error: no approach could be fitted")
    assert "unidentified: 1 budget" in err and not (tmp_path / "o").exists()


def test_approach1_with_a_constant_envelope_is_unidentified():
    rows = [dict(N=n, D=c / (6 * n), budget=c, loss=2.0 + (0.0 if n == 3e8 else 0.1) + 1e3 / c ** 0.1)
            for c in np.geomspace(1e18, 1e21, 5) for n in (1e8, 3e8, 1e9)]
    res = fit(pd.DataFrame(rows), approaches=(1,), final_points=True)
    assert res.approach1 is None
    assert dict(res.failed)["Approach 1"].startswith("unidentified: exponent a = ")


def test_frontier_with_loss_rising_in_compute_is_unidentified():
    C = np.geomspace(1e18, 1e21, 6)
    res = fit(pd.DataFrame(dict(C=C, loss=2.0 + 0.01 * np.log10(C / 1e18))))
    assert res.frontier is None and "unidentified" in dict(res.failed)["frontier law"]


def test_bootstrap_below_2_is_refused():
    with pytest.raises(ValueError, match="n_bootstrap=1: use 0"):
        fit_approaches(grid(), n_bootstrap=1)
