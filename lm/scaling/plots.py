"""Figures for scaling-law fits (matplotlib, no pyplot state): each function returns a Figure.

- `plot_isoflops`: loss against N per IsoFLOP budget, with the fitted parabolas and minima.
- `plot_allocations`: N_opt(C) and D_opt(C) for each approach, Chinchilla's and Kaplan's lines.
- `plot_loss_vs_compute`: every run's loss against FLOPs with the fitted frontier.
- `plot_contours`: contours of a fitted L(N, D) with the compute-optimal path and IsoFLOP lines.
`save_figure` writes PNG (SVG on request); `write_plots` writes all that apply to an `Approaches`.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure

from lm.scaling.approaches import Approaches
from lm.scaling.isoflop import Approach2
from lm.scaling.laws import CHINCHILLA, ChinchillaLaw, FlopsPerToken, kaplan_optimal
from lm.scaling.plotfits import frontier_law
from lm.scaling.results import prepare_results

_COLORS = {"Approach 1": "tab:blue", "Approach 2": "tab:orange", "Approach 3": "tab:green"}


def _budget_colors(budgets):
    norm = LogNorm(vmin=min(budgets), vmax=max(budgets) * 1.0001)
    cmap = matplotlib.colormaps["viridis"]
    return norm, cmap, {b: cmap(norm(b)) for b in budgets}


def plot_isoflops(a2: Approach2) -> Figure:
    """Loss vs parameters per budget: points, parabola in ln N, minimum (open star if off-centre)."""
    fig = Figure(figsize=(7.5, 5), layout="constrained")
    ax = fig.subplots()
    iso = a2.isoflops
    norm, cmap, colors = _budget_colors(iso["budget"].tolist())
    for r in iso.itertuples():
        pts = a2.points[a2.points["budget"] == r.budget]
        c = colors[r.budget]
        used = pts["used"].to_numpy(bool) if "used" in pts.columns else np.ones(len(pts), bool)
        ax.scatter(pts["N"][used], pts["loss"][used], s=14, color=c, alpha=0.8)
        ax.scatter(pts["N"][~used], pts["loss"][~used], s=14, facecolor="none", edgecolor=c, alpha=0.8)
        lo, hi = min(r.N_min, r.N_opt), max(r.N_max, r.N_opt)
        u = np.linspace(np.log(lo) - 0.1, np.log(hi) + 0.1, 100) - r.x0
        ax.plot(np.exp(u + r.x0), r.p0 + r.p1 * u + r.p2 * u * u, color=c, lw=1.2)
        ax.scatter([r.N_opt], [r.loss_opt], marker="*", s=140, zorder=3,
                   facecolor=c if r.inside else "white", edgecolor="black", linewidth=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("parameters N")
    ax.set_ylabel("loss (nats/token)")
    ax.set_title("IsoFLOP profiles (Approach 2); open dots: outside the parabola's window;\n"
                 "open stars: minimum outside the sizes used", fontsize=10)
    fig.colorbar(matplotlib.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, label="budget C (FLOPs)")
    return fig


def _interval_band(ax, est: dict, key: str, budgets, color: str, label: str) -> None:
    """Shade an approach's interval of `key` ('N_opt' or 'D_opt') across the budgets whose
    estimates have a finite interval (at least 2); nothing otherwise."""
    pts = [(c, est[f"{key}@{c:.3g}"]) for c in sorted(budgets) if f"{key}@{c:.3g}" in est]
    pts = [(c, e.lo, e.hi) for c, e in pts if np.isfinite(e.lo) and np.isfinite(e.hi) and e.lo > 0]
    if len(pts) >= 2:
        c, lo, hi = map(np.array, zip(*pts))
        if np.any(hi > lo):  # a zero-width interval (a degenerate fit) is no band
            ax.fill_between(c, lo, hi, color=color, alpha=0.15, label=label)


def plot_allocations(res: Approaches, C_range=None, references: bool = True) -> Figure:
    """Two panels, N_opt(C) and D_opt(C): each approach's law, the points it was fitted to, and
    its interval band (at the report's budgets) where it has one; with references. Every mark
    drawn has a legend entry."""
    fig = Figure(figsize=(11, 4.5), layout="constrained")
    ax_n, ax_d = fig.subplots(1, 2)
    if C_range is None:
        C_range = (min(res.budgets) / 10, max(res.budgets))
    C = np.geomspace(*C_range, 200)
    estimates = res.estimates()
    colors = {**_COLORS, "Approach 3 (VPNLS)": "tab:purple"}
    for name, ax, key in (("N", ax_n, "N_opt"), ("D", ax_d, "D_opt")):
        if res.approach1 is not None:
            law = res.approach1.fits.n_opt if name == "N" else res.approach1.fits.d_opt
            env = res.approach1.envelope
            ax.scatter(env["C"], env[name], s=4, color=_COLORS["Approach 1"], alpha=0.3,
                       label="Approach 1: envelope points")
            ax.plot(C, law(C), color=_COLORS["Approach 1"], label=f"Approach 1 (C^{law.a:.3f})")
        if res.approach2 is not None:
            law = res.approach2.fits.n_opt if name == "N" else res.approach2.fits.d_opt
            iso = res.approach2.isoflops
            ax.scatter(iso["budget"], iso[key], s=25, color=_COLORS["Approach 2"], zorder=3,
                       label="Approach 2: IsoFLOP minima")
            ax.plot(C, law(C), color=_COLORS["Approach 2"], label=f"Approach 2 (C^{law.a:.3f})")
        for label, a3 in res.approach3_fits().items():
            n3, d3 = a3.law.optimal(C)
            exp = a3.law.a if name == "N" else a3.law.b
            ax.plot(C, n3 if name == "N" else d3, color=colors[label], label=f"{label} (C^{exp:.3f})",
                    ls="-" if label == "Approach 3" else "-.")
        for label, est in estimates.items():
            pct = 100 * next(iter(est.values())).level
            _interval_band(ax, est, key, res.budgets, colors.get(label, "gray"), f"{label}, {pct:.0f}% interval")
        if references:
            nc, dc = CHINCHILLA.optimal(C)
            ax.plot(C, nc if name == "N" else dc, "k--", lw=1, label="Chinchilla (published fit)")
            nk, dk = kaplan_optimal(C)
            ax.plot(C, nk if name == "N" else dk, "k:", lw=1, label="Kaplan et al. (2020)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("training FLOPs C")
        ax.set_ylabel("compute-optimal parameters N_opt" if name == "N" else "compute-optimal tokens D_opt")
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=7)
    return fig


def plot_loss_vs_compute(results: pd.DataFrame, res: Approaches | None = None,
                         flops_per_token: FlopsPerToken | None = None) -> Figure:
    """Runs' loss against FLOPs (colour = N), the fitted frontier and Approach 3's optimum."""
    df = prepare_results(results, flops_per_token)
    fig = Figure(figsize=(7.5, 5), layout="constrained")
    ax = fig.subplots()
    sc = ax.scatter(df["C"], df["loss"], c=df["N"], norm=LogNorm(), cmap="viridis", s=14)
    fig.colorbar(sc, ax=ax, label="parameters N")
    C = np.geomspace(df["C"].min(), df["C"].max() * 10, 200)
    law, source = frontier_law(res, df)
    if law is not None:
        ax.plot(C, law.loss(C), "k-", lw=1.5,
                label=f"frontier fit to {source}: {law.E:.3f} + {law.K:.3g}·C^-{law.gamma:.3f}")
    if res is not None and res.approach3 is not None:
        ax.plot(C, res.approach3.law.optimal_loss(C, flops_per_token), "--", color=_COLORS["Approach 3"],
                label="Approach 3: L(N_opt(C), D_opt(C))")
    ax.set_xscale("log")
    ax.set_xlabel("training FLOPs C")
    ax.set_ylabel("loss (nats/token)")
    ax.legend(fontsize=8)
    ax.grid(True, alpha=0.3)
    return fig


def plot_contours(law: ChinchillaLaw, results: pd.DataFrame | None = None,
                  flops_per_token: FlopsPerToken | None = None, N_range=None, D_range=None) -> Figure:
    """Contours of L(N, D) over log N x log D, runs, IsoFLOP lines and the compute-optimal path."""
    df = prepare_results(results, flops_per_token) if results is not None else None
    if N_range is None:
        N_range = (df["N"].min() / 3, df["N"].max() * 30) if df is not None else (1e7, 1e12)
    if D_range is None:
        D_range = (df["D"].min() / 3, df["D"].max() * 30) if df is not None else (1e8, 1e13)
    N = np.geomspace(*N_range, 200)
    D = np.geomspace(*D_range, 200)
    L = law.loss(N[None, :], D[:, None])
    fig = Figure(figsize=(7.5, 6), layout="constrained")
    ax = fig.subplots()
    levels = np.quantile(L, np.linspace(0.0, 0.95, 16))
    cs = ax.contourf(N, D, L, levels=np.unique(levels), cmap="viridis_r", alpha=0.85, extend="max")
    fig.colorbar(cs, ax=ax, label="predicted loss L(N, D)")
    f = (lambda n: 6.0 * np.asarray(n)) if flops_per_token is None else flops_per_token
    C_lo, C_hi = f(N_range[0]) * D_range[0], f(N_range[1]) * D_range[1]
    for c in 10.0 ** np.arange(np.ceil(np.log10(C_lo)), np.floor(np.log10(C_hi)) + 1, 2):
        dd = c / np.array([float(f(n)) for n in N])
        ax.plot(N, dd, color="white", lw=0.6, ls="--")
    C_path = np.geomspace(C_lo, C_hi, 100)
    n_opt, d_opt = law.optimal(C_path, flops_per_token)
    ax.plot(n_opt, d_opt, color="red", lw=2, label="compute-optimal path (N_opt(C), D_opt(C))")
    if df is not None:
        ax.scatter(df["N"], df["D"], s=8, color="black", alpha=0.6, label="runs")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(*N_range)
    ax.set_ylim(*D_range)
    ax.set_xlabel("parameters N")
    ax.set_ylabel("tokens D")
    ax.set_title(f"L = {law.E:.3f} + {law.A:.4g}/N^{law.alpha:.3f} + {law.B:.4g}/D^{law.beta:.3f}\n"
                 "dashed: IsoFLOP lines every 100x", fontsize=10)
    ax.legend(fontsize=8, loc="upper left")
    return fig


FORMATS = ("png",)
"""What save_figure and write_plots write by default: PNG at 150 dpi. SVG (vector, for papers) on
request (`lm-fit --svg`, `lm-sweep fit --svg`, formats=("png", "svg")): it adds about half the PNG's
drawing time, laid out once for both (BENCHMARKS.md, "Small jobs, third pass")."""


def save_figure(fig: Figure, stem: str | Path, formats=FORMATS) -> list[Path]:
    """Write `stem`.png (150 dpi) and/or `stem`.svg, as `formats` lists; returns the paths. The
    layout (constrained) is computed once, for the first file, and kept for the others."""
    bad = [f for f in formats if f not in ("png", "svg")]
    if bad or not formats:
        raise ValueError(f"figure formats {list(formats)}: choose png and/or svg")
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(f".{f}") for f in formats]
    engine = fig.get_layout_engine()
    for i, path in enumerate(paths):
        fig.savefig(path, **({"dpi": 150} if path.suffix == ".png" else {}))
        if i == 0:
            fig.set_layout_engine("none")   # keep the positions just computed
    fig.set_layout_engine(engine)
    return paths


def write_plots(res: Approaches, results: pd.DataFrame, out_dir: str | Path,
                flops_per_token: FlopsPerToken | None = None, formats=FORMATS) -> list[Path]:
    """Every figure that applies to `res`, in `formats` (default PNG) under out_dir."""
    out = Path(out_dir)
    paths = save_figure(plot_allocations(res), out / "allocations", formats)
    paths += save_figure(plot_loss_vs_compute(results, res, flops_per_token), out / "loss_vs_compute", formats)
    if res.approach2 is not None:
        paths += save_figure(plot_isoflops(res.approach2), out / "isoflops", formats)
    if res.approach3 is not None:
        paths += save_figure(plot_contours(res.approach3.law, results, flops_per_token), out / "contours", formats)
    return paths


def plot_ghorbani(fit, N_e, N_d, loss) -> Figure:
    """Encoder-decoder sweep (lm.scaling.ghorbani): loss against decoder size for each encoder size
    (left) and against encoder size for each decoder size (right), with the fitted law's curves;
    the title gives the fitted exponents (or says they are not identified)."""
    N_e, N_d, loss = (np.asarray(x, float) for x in (N_e, N_d, loss))
    fig = Figure(figsize=(11, 4.5), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    for ax, (x, other, xname, oname) in zip(axes, ((N_d, N_e, "decoder", "N_e"), (N_e, N_d, "encoder", "N_d"))):
        values = sorted(set(other.tolist()))
        norm, cmap, colors = _budget_colors(values)
        grid = np.geomspace(x.min() / 1.2, x.max() * 1.2, 100)
        for v in values:
            pick = other == v
            ax.scatter(x[pick], loss[pick], s=18, color=colors[v], label=f"{oname}={v:.3g}")
            curve = fit.law.loss(np.full_like(grid, v), grid) if xname == "decoder" else fit.law.loss(grid, np.full_like(grid, v))
            ax.plot(grid, curve, color=colors[v], lw=1.1)
        ax.axhline(fit.law.L_inf, color="gray", ls=":", lw=1, label=f"L_inf={fit.law.L_inf:.4g}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_ylim(min(loss.min(), fit.law.L_inf) * 0.97, loss.max() * 1.05)   # the data, not the curves' tails
        ax.set_xlabel(f"{xname} parameters N_{xname[0]}")
        ax.legend(fontsize=7)
    axes[0].set_ylabel("loss (nats/token)")
    est = fit.estimates
    what = (f"p_e = {est['p_e'].value:.3f} [{est['p_e'].lo:.3f}, {est['p_e'].hi:.3f}], "
            f"p_d = {est['p_d'].value:.3f} [{est['p_d'].lo:.3f}, {est['p_d'].hi:.3f}]")
    why = "".join(f"\nnot identified: {w[:110]}" for w in fit.unidentified)
    fig.suptitle(f"L(N_e, N_d) = beta (N_e/N_e_ref)^-p_e (N_d/N_d_ref)^-p_d + L_inf\n{what}{why}", fontsize=9)
    return fig
