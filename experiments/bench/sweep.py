"""Where a sweep's worker time goes: trains a slice of a sweep (some of its budgets) through the
real pool back-end in a temporary folder, then prints the share of worker time spent inside
training steps (what `lm-sweep run` prints at its end: summed train_s over workers x wall) and,
per run, where the rest went.

Columns per run (seconds, from its result.json): steps; train (the loop's time outside evaluation
and checkpoints: steps, batches, logging); compile (the train step's trace + compile, or
compilation-cache load); eval; ckpt (saves + waiting for the last one); other (the rest of the
run's wall: building data and steps, init, restore checks, result). Worker time not in any run
(process start, waiting for work, the last runs' tail) is `idle`.

The slice compiles into a compilation cache of its own, empty at the start (what a sweep meeting
its shapes for the first time pays); with `--warm` the slice then runs again into a second folder
with that cache filled (what every later sweep of those shapes pays: exec.compile_cache='user').

    python -m experiments.bench.sweep                          # default sweep, its 2 smallest budgets
    python -m experiments.bench.sweep --budgets 1.6e12 --warm --json sweep_share.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import tempfile
import time


def slice_sweep(config: str, budgets: tuple[float, ...] | None, n_budgets: int, folder: str, cache: str):
    """The sweep config `config` restricted to `budgets` (default: its `n_budgets` smallest),
    writing into `folder`, compiling into the cache folder `cache`."""
    from experiments import configs as configs_lib

    cfg = configs_lib.load(config)
    chosen = budgets or tuple(sorted(cfg.budgets)[:n_budgets])
    unknown = sorted(set(chosen) - set(cfg.budgets))
    if unknown:
        raise SystemExit(f"bench_sweep: budgets {unknown} are not in sweep {config!r} ({list(cfg.budgets)})")
    return dataclasses.replace(cfg, budgets=chosen, out_dir=folder,
                               exec=dataclasses.replace(cfg.exec, compile_cache=cache))


def breakdown(rows: list[dict], wall_s: float, workers: int) -> dict:
    """Summed per-run timings and the share of worker time in training steps."""
    keys = ("wall_s", "train_s", "compile_s", "eval_s", "checkpoint_s", "data_s")
    sums = {k: sum(float(r.get(k) or 0.0) for r in rows) for k in keys}
    worker_s = wall_s * workers
    other = sums["wall_s"] - sums["train_s"] - sums["compile_s"] - sums["eval_s"] - sums["checkpoint_s"]
    return {"runs": len(rows), "workers": workers, "wall_s": round(wall_s, 2), "worker_s": round(worker_s, 2),
            **{k: round(v, 2) for k, v in sums.items()}, "other_s": round(other, 2),
            "idle_s": round(worker_s - sums["wall_s"], 2),
            "train_fraction": round(sums["train_s"] / worker_s, 4) if worker_s else None}


def run_slice(cfg) -> tuple[list[dict], dict]:
    """Train the sliced sweep `cfg`, print its rows; returns (rows, summary)."""
    from experiments import results as results_lib
    from experiments import runner

    plan = runner.prepare(cfg)
    t0 = time.time()
    outcome = runner.run_sweep(cfg, plan, log=lambda msg: print(f"# {msg}", flush=True))
    wall_s = time.time() - t0
    rows = sorted(results_lib.read_rows(cfg.directory), key=lambda r: r.get("finished_at", 0))
    print(f"# {cfg.name} budgets {list(cfg.budgets)}: {len(plan.runs)} runs, {cfg.exec.workers} worker(s) x "
          f"{cfg.exec.threads} thread(s), XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}, cache {cfg.exec.compile_cache}")
    print(f"# {'run':<26} {'steps':>6} {'wall':>7} {'train':>7} {'compile':>7} {'eval':>6} {'ckpt':>6} {'other':>6}")
    for r in rows:
        other = r["wall_s"] - r["train_s"] - r["compile_s"] - r["eval_s"] - r["checkpoint_s"]
        print(f"  {r['run_id']:<26} {r['steps']:>6} {r['wall_s']:7.2f} {r['train_s']:7.2f} {r['compile_s']:7.2f} "
              f"{r['eval_s']:6.2f} {r['checkpoint_s']:6.2f} {other:6.2f}")
    summary = breakdown(rows, wall_s, cfg.exec.workers)
    summary["failed"] = sorted(outcome.failed)
    print(json.dumps(summary))
    print(f"# time in training steps: {100 * summary['train_fraction']:.1f} % of {summary['workers']} worker(s) x "
          f"{summary['wall_s']:.1f} s")
    return rows, summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="default", help="sweep config (a name in experiments/configs/)")
    parser.add_argument("--budgets", help="comma-separated budgets of the config to train (default: the smallest)")
    parser.add_argument("--n-budgets", type=int, default=2, help="without --budgets: how many of the smallest")
    parser.add_argument("--warm", action="store_true", help="then again, with the shapes in the cache")
    parser.add_argument("--json", help="also write the summaries and rows to this file")
    args = parser.parse_args(argv)
    budgets = tuple(float(b) for b in args.budgets.split(",")) if args.budgets else None
    found = {}
    with tempfile.TemporaryDirectory() as tmp:
        cache = os.path.join(tmp, "xla_cache")
        for label in ("cold", "warm") if args.warm else ("cold",):
            print(f"# --- {label} compilation cache ---", flush=True)
            cfg = slice_sweep(args.config, budgets, args.n_budgets, os.path.join(tmp, label), cache)
            rows, summary = run_slice(cfg)
            found[label] = {"summary": summary, "rows": rows}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(found, f, indent=2)


if __name__ == "__main__":
    main()
