"""Scaling-law fit benchmark: Approach 3's 4,500-start grid fit and 1,000 bootstrap refits.

On Epoch's extraction of Chinchilla's data (240 points after dropping the 5 highest losses):
the cold fit (first call in the process: XLA compilation included), warm fits (median of
--repeats), and the bootstrap; wall and process CPU seconds for each, with the machine.

    python experiments/bench_fit.py
    python experiments/bench_fit.py --repeats 5 --resamples 1000 --scipy-starts 20

--scipy-starts K also times scipy's L-BFGS-B looping over K grid starts (the published way)
and extrapolates it to all 4,500.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "epoch_chinchilla_svg_extracted_data.csv"


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


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--resamples", type=int, default=1000)
    p.add_argument("--scipy-starts", type=int, default=0)
    args = p.parse_args(argv)
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
    print(f"bootstrap, {args.resamples} resamples x 8 warm starts: wall {w:.2f} s, cpu {c:.2f} s [target <= 120 s]")
    est = boot.estimates
    print("  SE: " + ", ".join(f"{k} {est[k].se:.4f}" for k in ("E", "alpha", "beta", "a"))
          + "  (Epoch: E 0.026, alpha 0.015, beta 0.021)")
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
