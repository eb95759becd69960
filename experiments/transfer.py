"""The learning-rate transfer report (`lm-sweep run mup_transfer`): optimal learning rate vs width.

From a transfer sweep's results table (kind 'lr_transfer': one cosine run per parametrisation x
width x learning rate) this finds each width's optimal learning rate under each parametrisation:
the vertex of a parabola in ln(lr) through the best grid point and its two neighbours (the grid
point itself, flagged, when the best is at an edge of the grid). Under muP the optimum should
stay put as the width grows (Yang et al. 2022 target: within 2x over 8x width); under the
standard parametrisation it moves down.

    table = transfer_table(load_results(folder))
    optima = optimal_learning_rates(table)
    print(format_transfer(table, optima)); plot_transfer(table, optima, "transfer.png")
"""

from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd


def transfer_table(frame: "pd.DataFrame") -> "pd.DataFrame":
    """One row per transfer run: parametrization, width, width_mult, learning_rate, loss (inf when
    the run diverged), run_id."""
    import numpy as np
    import pandas as pd

    rows = frame[frame["kind"] == "lr_transfer"]
    if rows.empty:
        raise ValueError("no learning-rate transfer runs (kind 'lr_transfer') in this table; run a sweep with "
                         "transfer=TransferConfig(...) such as `lm-sweep run mup_transfer`")
    loss = pd.to_numeric(rows["loss"], errors="coerce").astype(float)
    ok = (rows["status"] == "completed") & np.isfinite(loss)
    return pd.DataFrame({
        "run_id": rows["run_id"].to_numpy(), "parametrization": rows["parametrization"].to_numpy(),
        "width": rows["d_model"].astype(int).to_numpy(), "learning_rate": rows["learning_rate"].astype(float).to_numpy(),
        "loss": np.where(ok, loss, np.inf)}).sort_values(["parametrization", "width", "learning_rate"],
                                                         ignore_index=True)


def _vertex(lrs: list[float], losses: list[float]) -> tuple[float, float, bool]:
    """(optimal lr, its loss, at_edge) from one width's grid: parabola in ln lr through the best
    point and its neighbours, its vertex clipped to them."""
    i = min(range(len(losses)), key=lambda k: losses[k])
    if i == 0 or i == len(lrs) - 1 or not all(math.isfinite(v) for v in losses[i - 1:i + 2]):
        return lrs[i], losses[i], True
    x = [math.log(v) for v in lrs[i - 1:i + 2]]
    y = losses[i - 1:i + 2]
    d1, d2 = (y[1] - y[0]) / (x[1] - x[0]), (y[2] - y[1]) / (x[2] - x[1])
    curv = (d2 - d1) / (x[2] - x[0])              # half the second derivative
    if curv <= 0:
        return lrs[i], losses[i], False
    slope_mid = d1 + curv * (x[1] - x[0])          # derivative of the parabola at x[1]
    xv = min(max(x[1] - slope_mid / (2 * curv), x[0]), x[2])
    loss = y[1] + slope_mid * (xv - x[1]) + curv * (xv - x[1]) ** 2
    return math.exp(xv), loss, False


def optimal_learning_rates(table: "pd.DataFrame") -> "pd.DataFrame":
    """Per (parametrization, width): lr_opt, loss_opt, at_edge (best at the grid's edge), best_grid_lr."""
    import pandas as pd

    rows = []
    for (param, width), g in table.groupby(["parametrization", "width"], sort=True):
        g = g.sort_values("learning_rate")
        lrs, losses = g["learning_rate"].tolist(), g["loss"].tolist()
        lr_opt, loss_opt, edge = _vertex(lrs, losses)
        rows.append(dict(parametrization=param, width=int(width), lr_opt=lr_opt, loss_opt=loss_opt, at_edge=edge,
                         best_grid_lr=lrs[min(range(len(losses)), key=lambda k: losses[k])]))
    return pd.DataFrame(rows)


def transfer_spread(optima: "pd.DataFrame") -> dict[str, dict[str, float]]:
    """Per parametrisation: max/min of the optimal learning rate over the widths, and the width span."""
    out = {}
    for param, g in optima.groupby("parametrization"):
        out[param] = dict(lr_ratio=float(g["lr_opt"].max() / g["lr_opt"].min()),
                          width_span=float(g["width"].max() / g["width"].min()),
                          edges=int(g["at_edge"].sum()))
    return out


def format_transfer(table: "pd.DataFrame", optima: "pd.DataFrame") -> str:
    """The report: the loss grid (rows: parametrisation and width; columns: learning rates) and the
    optimal learning rate of each width, then the spread under each parametrisation."""
    lrs = sorted(table["learning_rate"].unique())
    lines = ["Learning-rate transfer: final eval loss (nats/token) per width and peak learning rate",
             f"  {'param':<9} {'width':>5}  " + " ".join(f"{lr:>8.3g}" for lr in lrs) + "   lr_opt   loss_opt"]
    for r in optima.itertuples():
        g = table[(table["parametrization"] == r.parametrization) & (table["width"] == r.width)]
        by_lr = dict(zip(g["learning_rate"], g["loss"]))
        cells = " ".join(f"{by_lr.get(lr, float('nan')):>8.4f}" if math.isfinite(by_lr.get(lr, float("nan")))
                         else f"{'diverged' if lr in by_lr else '-':>8}" for lr in lrs)
        lines.append(f"  {r.parametrization:<9} {r.width:>5}  {cells}  {r.lr_opt:8.3g}{'*' if r.at_edge else ' '} "
                     f"{r.loss_opt:8.4f}")
    lines.append("  (* best at the edge of the grid: the optimum may lie outside it)")
    for param, s in transfer_spread(optima).items():
        edges = f"; {s['edges']} width(s) best at a grid edge, so this is a bound" if s["edges"] else ""
        lines.append(f"Optimal learning rate under {param}: varies {s['lr_ratio']:.2f}x over {s['width_span']:.0f}x "
                     f"width" + (" (within 2x: transfers" if s["lr_ratio"] <= 2 else " (more than 2x") + edges + ")")
    return "\n".join(lines)


def plot_transfer(table: "pd.DataFrame", optima: "pd.DataFrame", path: str) -> str:
    """transfer_figure saved as a PNG at `path` (no display needed)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = transfer_figure(table, optima)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def transfer_figure(table: "pd.DataFrame", optima: "pd.DataFrame"):
    """Loss vs learning rate per width (one panel per parametrisation) and optimal lr vs width."""
    import matplotlib.pyplot as plt
    import numpy as np

    params = sorted(table["parametrization"].unique())
    fig, axes = plt.subplots(1, len(params) + 1, figsize=(4.2 * (len(params) + 1), 3.6))
    widths = sorted(table["width"].unique())
    colors = plt.cm.viridis(np.linspace(0, 0.9, len(widths)))
    finite = table["loss"][np.isfinite(table["loss"])]
    for ax, param in zip(axes, params):
        for width, color in zip(widths, colors):
            g = table[(table["parametrization"] == param) & (table["width"] == width)]
            ax.plot(g["learning_rate"], g["loss"].where(np.isfinite(g["loss"])), "o-", color=color, label=f"d={width}")
        ax.set(xscale="log", xlabel="peak learning rate", ylabel="final eval loss", title=param)
        if len(finite):
            ax.set_ylim(finite.min() - 0.02, min(finite.max(), finite.min() + 1.0) + 0.02)
        ax.legend(fontsize=7)
    ax = axes[-1]
    for param, marker in zip(params, "os^"):
        g = optima[optima["parametrization"] == param]
        ax.plot(g["width"], g["lr_opt"], marker + "-", label=param)
    ax.set(xscale="log", yscale="log", xlabel="width d_model", ylabel="optimal learning rate",
           title="optimal learning rate vs width")
    ax.legend()
    fig.tight_layout()
    return fig


def report_transfer(folder: str, frame: "pd.DataFrame") -> tuple[list[str], dict[str, Any]]:
    """(report lines, report.json values) of a transfer sweep; writes plots/lr_transfer.png."""
    table = transfer_table(frame)
    optima = optimal_learning_rates(table)
    path = plot_transfer(table, optima, os.path.join(folder, "plots", "lr_transfer.png"))
    lines = [format_transfer(table, optima), f"Plot: {path}"]
    return lines, {"transfer": optima.to_dict("records"), "transfer_spread": transfer_spread(optima)}
