"""Scaling-law fit benchmark: Approach 3's 4,500-start grid fit, 1,000 bootstrap refits, VPNLS,
and `lm-fit` end to end.

On Epoch's extraction of Chinchilla's data (240 points after dropping the 5 highest losses):
the cold fit (first call in the process: XLA compilation included), warm fits (median of
--repeats), the bootstrap, VPNLS (cold and warm), and `lm-fit` on the CSV with 1,000
bootstraps in a fresh process (--lmfit); wall and process CPU seconds, with the machine.

    python -m experiments.bench.fit
    python -m experiments.bench.fit --repeats 5 --resamples 1000 --scipy-starts 20
    python -m experiments.bench.fit --tables-only      # the docs' synthetic-grid tables

--scipy-starts K also times scipy's L-BFGS-B looping over K grid starts (the published way)
and extrapolates it to all 4,500. --tables prints (a) Approach 2's error in a per window
(experiments/bench/window.py's synthetic table) and (b) the error in D_opt at 1e24 FLOPs against
grid width, Approach 2 next to VPNLS.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

DEFAULT_DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "epoch_chinchilla_svg_extracted_data.csv"


def machine() -> str:
    cpu = platform.processor() or "?"
    try:
        names = [l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    import jax

    load = os.getloadavg() if hasattr(os, "getloadavg") else ("?",)
    return (f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}; python "
            f"{platform.python_version()}, jax {jax.__version__} ({jax.devices()[0].platform}), numpy "
            f"{np.__version__}; load average at start {load[0]:.2f}")


def timed(fn):
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w, time.process_time() - c


def load(path: Path):
    raw = pd.read_csv(path)
    N, C, L = raw["Model Size"].to_numpy(), raw["Training FLOP"].to_numpy(), raw["loss"].to_numpy()
    keep = np.sort(np.argsort(L)[:-5])
    return N[keep], C[keep] / (6 * N[keep]), L[keep]


def d_opt_table(C: float = 1e24) -> list[str]:
    """Relative error in D_opt(C) on the noise-free Chinchilla surface vs IsoFLOP grid width."""
    from lm.scaling.isoflop import approach2
    from lm.scaling.laws import CHINCHILLA
    from lm.scaling.synthetic import isoflop_grid
    from lm.scaling.vpnls import fit_vpnls

    _, d_true = CHINCHILLA.optimal(C)
    lines = ["| grid | Approach 2, default (auto) | Approach 2, k=5 | Approach 2, all points | VPNLS |",
             "|---|---|---|---|---|"]
    for factor in (2, 4, 8, 16, 32):
        df = isoflop_grid(CHINCHILLA, factor)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            a2 = [approach2(df, n_bootstrap=0, window=w, weighted=w == "auto").fits.d_opt(C) for w in ("auto", 5, None)]
        vp = fit_vpnls(df["N"], df["D"], df["loss"]).law.optimal(C)[1]
        lines.append(f"| ±{factor}x | " + " | ".join(f"{d / d_true - 1:+.2e}" for d in (*a2, vp)) + " |")
    return lines


def bench_vpnls(N, D, L, repeats: int) -> None:
    from lm.scaling.vpnls import fit_vpnls

    fit, w, c = timed(lambda: fit_vpnls(N, D, L))
    print(f"VPNLS, first call (the L-BFGS finish reuses the grid fit's compiled objective): wall {w:.2f} s, cpu {c:.2f} s")
    warm = [timed(lambda: fit_vpnls(N, D, L))[1:] for _ in range(repeats)]
    print(f"VPNLS, warm (median of {repeats}): wall {np.median([x[0] for x in warm]):.2f} s, cpu "
          f"{np.median([x[1] for x in warm]):.2f} s [target <= 1 s]; objective {fit.objective:.7e}; {fit.law}")


def bench_lmfit(path: Path, resamples: int, cache: str | None = None, label: str = "") -> None:
    """`lm-fit` on the CSV in a fresh process (imports, compilation, all approaches, no plots)."""
    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, "-m", "lm.scaling.cli", str(path), "--n-col", "Model Size", "--c-col", "Training FLOP",
               "--d-from-c", "--drop-highest-loss", "5", "--bootstrap", str(resamples), "--no-plots", "--out", out]
        cmd += ["--compile-cache", cache] if cache else []
        t, c0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wall, c1 = time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (c1.ru_utime + c1.ru_stime) - (c0.ru_utime + c0.ru_stime)
    status = "ok" if proc.returncode == 0 else f"exit {proc.returncode}: {proc.stderr.strip()[-200:]}"
    print(f"lm-fit end to end{label}, {resamples} bootstraps (fresh process, no plots): wall {wall:.2f} s, "
          f"cpu {cpu:.2f} s [target <= 20 s]; {status}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--resamples", type=int, default=1000)
    p.add_argument("--scipy-starts", type=int, default=0)
    p.add_argument("--tables", action="store_true", help="also print the synthetic-grid tables")
    p.add_argument("--tables-only", action="store_true", help="print only the synthetic-grid tables")
    args = p.parse_args(argv)
    if args.tables or args.tables_only:
        from experiments.bench.window import synthetic_table

        print("\n".join(["Approach 2, error in a (N_opt ∝ C^a):", *synthetic_table(), "",
                         "Error in D_opt at 1e24 FLOPs, noise-free Chinchilla surface:", *d_opt_table()]))
        if args.tables_only:
            return 0
    if not args.data.exists():
        print(f"bench_fit: data absent: {args.data} (see shared/data/SOURCES.md)")
        return 1
    from lm.scaling.bootstrap import bootstrap_chinchilla
    from lm.scaling.fit import chinchilla_grid, chinchilla_objective, fit_chinchilla
    from lm.scaling.laws import ChinchillaLaw

    print(f"machine: {machine()}")
    N, D, L = load(args.data)
    fit, w, c = timed(lambda: fit_chinchilla(N, D, L))
    print(f"grid fit, cold (includes compilation): wall {w:.2f} s, cpu {c:.2f} s")
    warm = [timed(lambda: fit_chinchilla(N, D, L))[1:] for _ in range(args.repeats)]
    ws, cs = np.median([x[0] for x in warm]), np.median([x[1] for x in warm])
    print(f"grid fit, warm (median of {args.repeats}): wall {ws:.2f} s, cpu {cs:.2f} s "
          f"[target <= 10 s]; {fit.n_starts} starts, {fit.n_converged} converged, {len(N)} points")
    law = fit.law
    print(f"  objective {fit.objective:.7e}; E = {law.E:.4f}, A = {law.A:.1f}, B = {law.B:.1f}, "
          f"alpha = {law.alpha:.4f}, beta = {law.beta:.4f}, a = {law.a:.4f}, "
          f"D/N at 5.76e23 = {law.tokens_per_parameter(5.76e23):.2f}")
    boot, w, c = timed(lambda: bootstrap_chinchilla(N, D, L, fit, n_resamples=args.resamples))
    print(f"bootstrap, {args.resamples} resamples x 6 warm starts: wall {w:.2f} s, cpu {c:.2f} s [target <= 120 s]")
    est = boot.estimates
    print("  SE: " + ", ".join(f"{k} {est[k].se:.4f}" for k in ("E", "alpha", "beta", "a"))
          + "  (Epoch: E 0.026, alpha 0.015, beta 0.021)")
    bench_vpnls(N, D, L, args.repeats)
    env_cache = os.environ.pop("LM_COMPILE_CACHE", None)
    bench_lmfit(args.data, args.resamples, label=" (no compile cache)")
    with tempfile.TemporaryDirectory() as cache:
        bench_lmfit(args.data, args.resamples, cache, label=" (compile cache, first run fills it)")
        bench_lmfit(args.data, args.resamples, cache, label=" (compile cache, warm)")
    if env_cache is not None:
        os.environ["LM_COMPILE_CACHE"] = env_cache
    if args.scipy_starts:
        from scipy.optimize import minimize

        grid = chinchilla_grid()[np.random.default_rng(0).choice(4500, args.scipy_starts, replace=False)]
        obj = lambda t: chinchilla_objective(ChinchillaLaw.from_log(*t), N, D, L)
        _, w, c = timed(lambda: [minimize(obj, s, method="L-BFGS-B") for s in grid])
        print(f"scipy L-BFGS-B, {args.scipy_starts} starts in a loop: wall {w:.2f} s -> "
              f"~{w / args.scipy_starts * 4500:.0f} s for all 4,500")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
