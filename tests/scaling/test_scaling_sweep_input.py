"""`lm-fit sweeps/NAME` (the folder or its results.jsonl) fits the sweep's table; `lm-sweep fit`
takes lm-fit's fitting and forecast options through the same parser (issue 24, item 3)."""

import json

import numpy as np
import pandas as pd
import pytest

from lm.scaling.cli import main
from lm.scaling.laws import ChinchillaLaw
from lm.scaling.tables import read_sweep

LAW = ChinchillaLaw(E=1.8, A=480.0, B=2100.0, alpha=0.35, beta=0.37)


def sweep_frame(seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for c in np.geomspace(1e18, 1e21, 5):
        n_opt, _ = LAW.optimal(c)
        for k, n in enumerate(n_opt * np.geomspace(1 / 4, 4, 7)):
            d = c / (6 * n)
            rows.append(dict(run_id=f"c{c:.0e}-{k}", kind="cosine", status="completed", N=n * 1.2, N_nonembed=n,
                             D=d, C=6 * n * d, budget=c, convention="6n", shape=f"s{k}", entropy_floor=1.8,
                             loss=LAW.loss(n, d) * np.exp(0.003 * rng.standard_normal()),
                             eval_curve=[{"tokens": d, "eval_loss": 3.0}]))
    rows.append(dict(rows[0], run_id="wsd-0", kind="wsd_cooldown"))
    rows.append(dict(rows[1], run_id="bad", status="diverged", loss=None))
    return pd.DataFrame(rows)


@pytest.fixture
def sweep_dir(tmp_path):
    d = tmp_path / "sweeps" / "toy"
    d.mkdir(parents=True)
    frame = sweep_frame()
    (d / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in frame.to_dict("records")))
    return d


def test_read_sweep_keeps_completed_cosine_runs_with_nonembedding_n(sweep_dir):
    t = read_sweep(sweep_dir)
    assert len(t) == 35 and list(t.columns) == ["run", "N", "D", "C", "loss", "budget"]
    np.testing.assert_allclose(t["C"], 6 * t["N"] * t["D"], rtol=1e-12)
    pd.testing.assert_frame_equal(read_sweep(sweep_dir / "results.jsonl"), t)
    with pytest.raises(ValueError, match="has no results.jsonl"):
        read_sweep(sweep_dir.parent)


def test_read_sweep_does_not_follow_the_order_runs_finished(sweep_dir, tmp_path):
    lines = (sweep_dir / "results.jsonl").read_text().splitlines(keepends=True)
    other = tmp_path / "reversed.jsonl"
    other.write_text("".join(reversed(lines)))
    pd.testing.assert_frame_equal(read_sweep(other), read_sweep(sweep_dir), check_exact=True)


@pytest.mark.parametrize("which", ["folder", "jsonl"])
def test_lm_fit_on_a_sweep(sweep_dir, tmp_path, capsys, which):
    path = sweep_dir if which == "folder" else sweep_dir / "results.jsonl"
    out = tmp_path / "fit"
    assert main([str(path), "--out", str(out), "--no-plots", "--bootstrap", "0", "--approaches", "2,frontier"]) == 0
    text = capsys.readouterr().out
    assert "(35 rows)" in text and "Approach 2 (5 budgets" in text
    assert json.loads((out / "fit.json").read_text())["shape"] == "runs"


@pytest.mark.slow
def test_lm_sweep_fit_takes_lm_fit_options(sweep_dir, capsys, monkeypatch):
    from experiments import sweep

    frame = sweep_frame()

    class Cfg:
        name, convention, budgets, transfer, wsd, encdec = "toy", "6n", (1e21,), None, None, None
        directory = str(sweep_dir)

        class exec:  # noqa: N801 - stands in for ExecConfig
            compile_cache = "none"

    monkeypatch.setattr(sweep.results_lib, "load_sweep_config", lambda folder: Cfg)
    monkeypatch.setattr(sweep.results_lib, "load_results", lambda folder: frame)
    code = sweep.main(["fit", str(sweep_dir), "--bootstrap", "0", "--approaches", "2,frontier", "--holdout", "1",
                       "--window", "x4", "--max-splits", "1"])
    assert code == 0
    fc = pd.read_csv(sweep_dir / "fit" / "forecast.csv")
    assert fc["chosen"].any() and (fc["budget"] == 1e21).all()
    rec = json.loads((sweep_dir / "fit" / "fit.json").read_text())
    assert rec["options"]["window"] == 4.0 and rec["options"]["holdout"] == 1
    assert sweep.main(["fit", str(sweep_dir), "--bootstrap", "1"]) == 2
    assert "--bootstrap 1: use 0" in capsys.readouterr().err
