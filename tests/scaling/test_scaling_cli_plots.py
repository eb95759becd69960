"""`lm-fit` end to end, and the figures."""

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from lm.scaling import plots
from lm.scaling.cli import main

def test_cli_on_epochs_data(epoch_csv, tmp_path, capsys):
    rc = main([str(epoch_csv), "--n-col", "Model Size", "--c-col", "Training FLOP", "--drop-highest-loss", "5",
               "--bootstrap", "50", "--budgets", "5.76e23,1e25", "--approaches", "3", "--out", str(tmp_path),
               "--no-plots"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "(240 rows)" in out and "objective 1.018274e-03" in out
    assert "E = 1.817" in out and "alpha = 0.3473" in out
    table = pd.read_csv(tmp_path / "allocations.csv")
    row = table[table["C"] == 5.76e23].iloc[0]
    assert 16 <= row["tokens_per_param"] <= 21
    assert (tmp_path / "summary.txt").read_text().startswith("lm-fit")
    assert not list(tmp_path.glob("*.png"))


@pytest.mark.slow
def test_cli_writes_figures(epoch_csv, tmp_path):
    assert main([str(epoch_csv), "--n-col", "Model Size", "--c-col", "Training FLOP", "--drop-highest-loss", "5",
                 "--bootstrap", "20", "--out", str(tmp_path)]) == 0
    for name in ("allocations", "loss_vs_compute", "contours", "isoflops"):
        for ext in (".png", ".svg"):
            assert (tmp_path / (name + ext)).stat().st_size > 1000


def test_cli_errors_name_the_problem(tmp_path, capsys):
    csv = tmp_path / "runs.csv"
    pd.DataFrame({"params": [1e8, 2e8, 4e8, 8e8, 1.6e9, 3.2e9], "tokens": [1e9] * 6,
                  "loss": [3.0, 2.9, 2.8, 2.7, 2.6, -1.0]}).to_csv(csv, index=False)
    assert main([str(csv)]) == 2
    assert "needs a loss column 'loss' and N ('N')" in capsys.readouterr().err
    assert main([str(csv), "--n-col", "params", "--d-col", "tokens", "--no-plots", "--bootstrap", "2"]) == 2
    assert "'loss' must be finite and > 0; bad rows: 5" in capsys.readouterr().err
    assert main([str(csv), "--n-col", "params", "--d-from-c"]) == 2
    assert "--d-from-c needs a FLOPs column 'C'" in capsys.readouterr().err


def test_module_entry_point_runs():
    out = subprocess.run([sys.executable, "-m", "lm.scaling.cli", "--help"], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0 and "--d-from-c" in out.stdout and "lm-fit" in out.stdout


def test_figures(synthetic_approaches, tmp_path):
    df, res = synthetic_approaches
    written = plots.write_plots(res, df, tmp_path)
    names = sorted(p.name for p in written)
    assert names == sorted(f"{n}.{e}" for n in ("allocations", "loss_vs_compute", "isoflops", "contours")
                           for e in ("png", "svg"))
    assert all(p.stat().st_size > 1000 for p in written)
    assert (tmp_path / "contours.svg").read_text().lstrip().startswith("<?xml")
    figs = {"isoflops": plots.plot_isoflops(res.approach2),
            "allocations": plots.plot_allocations(res),
            "loss_vs_compute": plots.plot_loss_vs_compute(df, res),
            "contours": plots.plot_contours(res.approach3.law, df)}
    for name, fig in figs.items():
        assert isinstance(fig, Figure)
        assert fig.axes[0].get_xlabel() and fig.axes[0].get_ylabel(), name
    # Legends name every approach that ran and both references.
    labels = [t.get_text() for t in figs["allocations"].axes[0].get_legend().get_texts()]
    assert any("Approach 2" in s for s in labels) and any("Approach 3" in s for s in labels)
    assert any("Chinchilla" in s for s in labels) and any("Kaplan" in s for s in labels)
    # The contour plot's path is the fitted law's compute-optimal allocation.
    path = [ln for ln in figs["contours"].axes[0].lines if "compute-optimal" in str(ln.get_label())][0]
    n, d = path.get_data()
    np.testing.assert_allclose(d, res.approach3.law.optimal(6 * n * d)[1], rtol=1e-9)
    # The frontier on the loss-vs-compute plot is fitted to Approach 2's minima.
    law, source = plots.frontier_law(res, df)
    assert source == "Approach 2 minima"
    iso = res.approach2.isoflops
    np.testing.assert_allclose(law.loss(iso["budget"]), iso["loss_opt"], rtol=0.01)
