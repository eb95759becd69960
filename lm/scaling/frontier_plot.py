"""The frontier law's figure: the per-budget minima, L_opt(C) = E + K C^-gamma with its bootstrap
band, and the forecasts (held-out observations and predicted budgets) of the chosen law."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from lm.scaling.frontier import Frontier


def plot_frontier(fr: Frontier, forecasts: pd.DataFrame | None = None, level: float = 0.9) -> Figure:
    """Minima (points), the law (line) and its `level` band; forecasts: aim.COLUMNS rows (optional)."""
    fig = Figure(figsize=(7.5, 5), layout="constrained")
    ax = fig.subplots()
    m = fr.minima
    ax.plot(m["budget"], m["loss"], "o", color="k", ms=5, label=f"per-budget minima ({len(m)})")
    hi_c = m["budget"].max() * 10
    if forecasts is not None and len(forecasts):
        hi_c = max(hi_c, float(forecasts["budget"].max()) * 2)
    C = np.geomspace(m["budget"].min() / 2, hi_c, 200)
    law = fr.law
    ax.plot(C, law.loss(C), "-", color="tab:purple",
            label=f"{fr.name}: {law.E:.3f} + {law.K:.3g}·C^-{law.gamma:.3f}")
    pred, lo, hi = fr.predict(C, level)
    if np.all(np.isfinite(lo)):
        ax.fill_between(C, lo, hi, color="tab:purple", alpha=0.15, label=f"{100 * level:.0f} % interval of a minimum")
    if forecasts is not None and len(forecasts):
        f = forecasts[(forecasts["kind"] == "optimum") & forecasts["chosen"].astype(bool)]
        obs = f[f["observed"].notna()]
        if len(obs):
            ax.plot(obs["budget"], obs["observed"], "s", mfc="none", color="tab:red", label="held out (observed)")
        if len(f):
            ax.errorbar(f["budget"], f["predicted"], yerr=[f["predicted"] - f["lo"], f["hi"] - f["predicted"]],
                        fmt="x", color="tab:red", capsize=3, label=f"forecast ({f['approach'].iloc[0]})")
    ax.set_xscale("log")
    ax.set_xlabel("training FLOPs C")
    ax.set_ylabel("compute-optimal loss (nats/token)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return fig
