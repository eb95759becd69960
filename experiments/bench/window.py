"""Approach 2's window: the default ("auto", budgets weighted by precision) against the old ones,
on synthetic IsoFLOP grids and on the public grids.

    python -m experiments.bench.window              # both tables (~1 min on 2 cores)
    python -m experiments.bench.window --synthetic  # only the synthetic-grid table
    python -m experiments.bench.window --public     # only the public grids

Synthetic: grids of +-2x, +-4x, +-8x, +-16x, +-32x around the minimum, 9 sizes per budget, 5
budgets 1e18-1e22 drifting off-centre (lm.scaling.synthetic.isoflop_grid), noise-free and with
0.5 % log-normal noise (mean ± sd over --seeds seeds, worst), for Chinchilla's law and a lopsided
one. Public: Porian et al. 2024's 15 IsoFLOP grids (../shared/data/porian2024_isoflop_points.csv)
against their published exponent a (porian2024_power_law_fits.csv), and Open-Athena's 8
(open_athena_isoflops.csv): a and b per window.
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
WINDOWS = (("auto", True, "default: auto, weighted"), (5, False, "old default: k=5"),
           (4.0, False, "x4"), (None, False, "all points"))
"""(window, weighted, label) compared."""
PORIAN_KEYS = ["source_file", "dataset", "hparams", "warmup", "decay", "param_count", "loss_split"]


def fitted(df: pd.DataFrame, window, weighted: bool):
    """Approach 2's power-law fits, or None where it cannot fit (too few convex budgets)."""
    from lm.scaling.isoflop import approach2

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return approach2(df, n_bootstrap=0, window=window, weighted=weighted).fits
        except ValueError:
            return None


def a_errors(law, factor: float, noise: float, seeds: int, window, weighted: bool) -> np.ndarray:
    """[seeds] a - a_true on drifting synthetic grids (nan where Approach 2 cannot fit)."""
    from lm.scaling.synthetic import isoflop_grid

    out = []
    for seed in range(seeds if noise else 1):
        fits = fitted(isoflop_grid(law, factor, noise=noise, seed=seed), window, weighted)
        out.append(np.nan if fits is None else fits.n_opt.a - law.a)
    return np.array(out)


def _cell(e: np.ndarray) -> str:
    if np.isnan(e).all():
        return "no fit"
    bad = f", {int(np.isnan(e).sum())} no fit" if np.isnan(e).any() else ""
    e = e[np.isfinite(e)]
    if len(e) == 1:
        return f"{e[0]:+.4f}{bad}"
    return f"{np.mean(e):+.4f} ± {np.std(e, ddof=1):.4f} (worst {e[np.argmax(np.abs(e))]:+.4f}){bad}"


def synthetic_table(seeds: int = 10, factors=(2, 4, 8, 16, 32)) -> list[str]:
    """Markdown rows: a - a_true per law, grid width and noise, one column per window."""
    from lm.scaling.laws import CHINCHILLA, ChinchillaLaw

    lopsided = ChinchillaLaw(E=1.69, A=406.4, B=410.7, alpha=0.465, beta=0.155)
    lines = ["| law | grid | noise | " + " | ".join(w[2] for w in WINDOWS) + " |", "|---" * (3 + len(WINDOWS)) + "|"]
    for name, law in (("Chinchilla (a=0.452)", CHINCHILLA), ("lopsided (a=0.25)", lopsided)):
        for factor in factors:
            for noise in (0.0, 0.005):
                cells = [_cell(a_errors(law, factor, noise, seeds, w, wt)) for w, wt, _ in WINDOWS]
                lines.append(f"| {name} | ±{factor}x | {100 * noise:.1f} % | " + " | ".join(cells) + " |")
    return lines


def porian_grids(data: Path = DATA):
    """[(name, table, published a)] for Porian et al.'s 15 IsoFLOP grids."""
    pts = pd.read_csv(data / "porian2024_isoflop_points.csv")
    pub = pd.read_csv(data / "porian2024_power_law_fits.csv").set_index(PORIAN_KEYS)["n_exponent"]
    out = []
    for key, g in pts.groupby(PORIAN_KEYS):
        table = pd.DataFrame(dict(N=g["N"], D=g["D"], C=g["flops"], budget=g["flops"], loss=g["loss"]))
        out.append(("/".join(str(k) for k in key[1:6]), table, float(pub.loc[key])))
    return out


def public_tables(data: Path = DATA) -> list[str]:
    """Markdown: Porian's 15 grids (a - published a per window, and a summary row), then
    Open-Athena's 8 grids (a and b per window)."""
    names = [w[2] for w in WINDOWS]
    lines = ["| Porian et al. grid | published a | " + " | ".join(names) + " |", "|---" * (2 + len(WINDOWS)) + "|"]
    errs = {w[2]: [] for w in WINDOWS}
    for name, table, a_pub in porian_grids(data):
        cells = []
        for w, wt, label in WINDOWS:
            fits = fitted(table, w, wt)
            e = np.nan if fits is None else fits.n_opt.a - a_pub
            errs[label].append(e)
            cells.append("no fit" if fits is None else f"{e:+.3f}")
        lines.append(f"| {name} | {a_pub:.3f} | " + " | ".join(cells) + " |")
    summary = [f"{int(np.sum(np.abs(e) <= 0.03))}/15 within 0.03, mean {np.nanmean(np.abs(e)):.4f}"
               for e in map(np.array, errs.values())]
    lines.append("| **summary** | | " + " | ".join(summary) + " |")
    athena = pd.read_csv(data / "open_athena_isoflops.csv")
    lines += ["", "| Open-Athena grid | " + " | ".join(f"a, b ({n})" for n in names) + " |",
              "|---" * (1 + len(WINDOWS)) + "|"]
    for name, g in athena.groupby("experiment"):
        table = pd.DataFrame(dict(N=g["params"], D=g["tokens"], budget=g["budget"], loss=g["loss"]))
        cells = []
        for w, wt, _ in WINDOWS:
            fits = fitted(table, w, wt)
            cells.append("no fit" if fits is None else f"{fits.n_opt.a:.3f}, {fits.d_opt.a:.3f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--synthetic", action="store_true", help="only the synthetic-grid table")
    p.add_argument("--public", action="store_true", help="only the public grids")
    p.add_argument("--data", type=Path, default=DATA)
    args = p.parse_args(argv)
    both = not (args.synthetic or args.public)
    if args.synthetic or both:
        print("Approach 2, a - a_true on synthetic IsoFLOP grids (9 sizes, 5 drifting budgets):")
        print("\n".join(synthetic_table(args.seeds)))
    if args.public or both:
        if not (args.data / "porian2024_isoflop_points.csv").exists():
            print(f"public grids: data absent in {args.data} (see shared/data/SOURCES.md)")
            return 1
        print("\nApproach 2 on the public grids:")
        print("\n".join(public_tables(args.data)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
