"""Small jobs: a 9-run sweep's fit, `lm-sweep plan`'s probe, `lm-fit` on a 35-row CSV and on Epoch's points.

Each command runs in a fresh process with an empty compilation cache (cold), then again with the
cache it filled (warm); wall and CPU seconds (the child's user + system, all its threads), with the
load average. --baseline DIR runs every command from another checkout too (e.g. `git worktree add
/tmp/base main`), interleaved with this one, so that before and after share the machine's load.

    python -m experiments.bench.small_jobs                  # trains the 9-run sweep first (~25 CPU-s)
    python -m experiments.bench.small_jobs --sweep DIR      # reuse a trained sweep folder
    python -m experiments.bench.small_jobs --only fit,lmfit # a subset: fit, plan, lmfit, epoch
    python -m experiments.bench.small_jobs --sweep DIR --baseline /tmp/base

The sweep: 3 budgets (4e8-1.6e9 FLOPs) x 3 sizes (d8/d16/d24, depth 1), batch 8 x 32, inline; the
CSV: a synthetic +-4x IsoFLOP grid from Chinchilla's law, 5 budgets x 7 sizes, 0.5 % noise; Epoch:
`lm-fit` with the walk-forward (--forecast) on Epoch's extraction of Chinchilla's points
(../shared/data, the 5 highest losses dropped: 240 rows), no figures.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONFIG = '''
from experiments.configs import ExecConfig, SizeConfig, SweepConfig, train_template
from lm.config import DataConfig, OptimConfig

def get_config():
    return SweepConfig(
        name="small9", budgets=(4e8, 8e8, 1.6e9), convention="6n",
        sizes=SizeConfig(targets=(1.2e3, 5e3, 1.2e4), width_step=8, head_dim=8, min_layers=1, max_layers=2),
        train=train_template(data=DataConfig(seq_len=32), optim=OptimConfig(learning_rate=1e-2, warmup_steps=5),
                             batch_size=8, eval_batches=1),
        min_steps=10, evals_per_run=2, checkpoints_per_run=1,
        exec=ExecConfig(backend="inline", workers=1, threads=1))
'''


EPOCH = ROOT.parent / "shared" / "data" / "epoch_chinchilla_svg_extracted_data.csv"


def timed(cmd: list[str], env: dict, root: Path = ROOT) -> tuple[float, float, int, str]:
    """(wall s, CPU s of the child, exit code, last output line) of one fresh process run from root."""
    c0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    proc = subprocess.run(cmd, env={**env, "PYTHONPATH": str(root)}, cwd=root, capture_output=True, text=True)
    wall = time.perf_counter() - t
    c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (c1.ru_utime + c1.ru_stime) - (c0.ru_utime + c0.ru_stime)
    tail = (proc.stdout.strip().splitlines() or [""])[-1][:100] if proc.returncode == 0 else proc.stderr.strip()[-300:]
    return wall, cpu, proc.returncode, tail


def cold_and_warm(label: str, cmd: list[str], env: dict, cache: Path, prepare=None,
                  roots: dict[str, Path] | None = None) -> None:
    """Run cmd with an empty cache, then with the cache it filled, from each checkout in roots; print each."""
    for name, root in (roots or {"": ROOT}).items():
        shutil.rmtree(cache, ignore_errors=True)
        for state in ("cold", "warm"):
            if prepare is not None:
                prepare()
            load = os.getloadavg()[0]
            wall, cpu, rc, tail = timed(cmd, env, root)
            print(f"{label}{f' [{name}]' if name else ''} ({state} cache): wall {wall:6.2f} s, cpu {cpu:6.2f} s, "
                  f"load {load:.1f}; {'ok' if rc == 0 else f'exit {rc}'}: {tail}", flush=True)


def write_csv(path: Path) -> None:
    from lm.scaling.laws import CHINCHILLA
    from lm.scaling.synthetic import isoflop_grid

    isoflop_grid(CHINCHILLA, 4, n_sizes=7, noise=0.005, seed=0)[["N", "D", "loss"]].to_csv(path, index=False)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sweep", type=Path, help="a trained 9-run sweep folder (default: train one)")
    p.add_argument("--only", default="fit,plan,lmfit,epoch")
    p.add_argument("--baseline", type=Path, help="another checkout to time too, interleaved (before/after)")
    args = p.parse_args(argv)
    only = set(args.only.split(","))
    roots = {"this": ROOT, "baseline": args.baseline.resolve()} if args.baseline else None
    with tempfile.TemporaryDirectory(prefix="small-jobs-") as tmp:
        tmp = Path(tmp)
        cache = tmp / "xla"
        env = {**os.environ, "LM_COMPILE_CACHE": str(cache), "XLA_FLAGS": ""}
        config = tmp / "small9.py"
        config.write_text(CONFIG)
        py = [sys.executable, "-m"]
        print(f"machine: {os.cpu_count()} cores; python {sys.version.split()[0]}; load {os.getloadavg()}")
        if "fit" in only:
            sweep = args.sweep
            if sweep is None:
                sweep = tmp / "sweep"
                wall, cpu, rc, tail = timed(py + ["experiments.sweep", "run", str(config), "--out", str(sweep),
                                                  "--no-fit", "--no-progress"], env)
                print(f"training the 9-run sweep: wall {wall:.1f} s, cpu {cpu:.1f} s; {tail}")
            work = tmp / "fit"
            prepare = lambda: (shutil.rmtree(work, ignore_errors=True), shutil.copytree(sweep, work))
            cold_and_warm("lm-sweep fit, 9 runs", py + ["experiments.sweep", "fit", str(work)], env, cache, prepare, roots)
        if "plan" in only:
            cold_and_warm("lm-sweep plan (probe)", py + ["experiments.sweep", "plan", str(config),
                                                         "--out", str(tmp / "plan")], env, cache, roots=roots)
        if "lmfit" in only:
            csv = tmp / "rows35.csv"
            write_csv(csv)
            cold_and_warm("lm-fit, 35 rows", py + ["lm.scaling.cli", str(csv), "--out", str(tmp / "lmfit")], env, cache,
                          roots=roots)
        if "epoch" in only:
            cold_and_warm("lm-fit --forecast, Epoch 240", py + [
                "lm.scaling.cli", str(EPOCH), "--n-col", "Model Size", "--c-col", "Training FLOP",
                "--drop-highest-loss", "5", "--forecast", "--no-plots", "--out", str(tmp / "epoch")], env, cache,
                roots=roots)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
