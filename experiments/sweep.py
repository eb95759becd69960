"""`lm-sweep`: plan -> run -> fit -> report, for IsoFLOP (and WSD) scaling sweeps.

    lm-sweep run default              # the main job (what `make sweep` runs): plan, run, fit, report
    lm-sweep plan default             # the table of runs, with a wall-time estimate from a probe
    lm-sweep status sweeps/default    # which runs are done, running, failed, pending
    lm-sweep fit sweeps/default       # fits, report and plots from the results table
    lm-sweep repair sweeps/default    # move bad lines of the results table aside (kept)

CONFIG is a name in experiments/configs/ or a path to a Python file defining get_config().
Re-running `run` on the same folder resumes: finished runs are skipped, interrupted ones resume
from their checkpoints, failed ones are retried (up to exec.max_retries).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

from experiments import configs as configs_lib
from experiments import results as results_lib
from experiments import runner, worker
from experiments.plan import make_plan
from experiments.plan_table import format_plan
from experiments.progress import Bars
from experiments.report import report


def _config(args: argparse.Namespace) -> configs_lib.SweepConfig:
    cfg = configs_lib.load(args.config)
    changes: dict[str, Any] = {}
    if getattr(args, "out", None):
        changes["out_dir"] = args.out
    for name in ("backend", "workers", "threads"):
        if getattr(args, name, None) is not None:
            changes[f"exec.{name}"] = getattr(args, name)
    return configs_lib.replace(cfg, **changes).validate() if changes else cfg


def _cache(cfg) -> None:
    worker.configure_compile_cache(worker.compile_cache_dir(cfg.exec.compile_cache, cfg.directory))


def cmd_plan(args: argparse.Namespace) -> int:
    from experiments.estimate import estimate_seconds, probe
    cfg = _config(args)
    plan = make_plan(cfg)
    seconds = {}
    if args.probe > 0:
        cfg, _ = runner.resolve_dtype(cfg, plan)     # time the dtype the sweep's runs will use               # time steps the way a worker runs them (threads, one device)
        os.environ.update(worker.worker_env(cfg.exec.threads))
        if hasattr(os, "sched_setaffinity") and cfg.exec.backend != "inline":
            os.sched_setaffinity(0, set(range(min(cfg.exec.threads, os.cpu_count() or 1))))
        _cache(cfg)
        shapes = sorted({r.shape for r in plan.runs}, key=lambda s: min(r.params for r in plan.runs if r.shape == s))
        picks = sorted({0, len(shapes) // 2, len(shapes) - 1})[:args.probe]
        print(f"probing {len(picks)} shape(s) for throughput ...", file=sys.stderr, flush=True)
        seconds = estimate_seconds(plan, probe(cfg, [shapes[i] for i in picks]))
    print(format_plan(plan, seconds))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    cfg = _config(args)
    plan = runner.prepare(cfg)          # every bad input fails here, before anything is written
    folder = cfg.directory
    print(format_plan(plan), file=sys.stderr, flush=True)
    if cfg.exec.backend == "inline":
        _cache(cfg)
    observer = None if args.no_progress else Bars(run_bars=cfg.exec.backend != "inline")
    outcome = runner.run_sweep(cfg, plan, observer=observer, retry_failed=args.retry_failed)
    timing = _timing(folder, outcome, cfg)
    print(f"\nsweep: trained {len(outcome.trained)} run(s) in {outcome.wall_s:.0f} s; "
          f"{len(outcome.failed)} failed, {len(outcome.blocked)} blocked", flush=True)
    for run_id, error in {**outcome.failed, **outcome.blocked}.items():
        print(f"  {run_id}: {error.splitlines()[-1] if error else ''}")
    if timing.get("train_fraction") is not None:
        print(f"time in training steps: {100 * timing['train_fraction']:.1f} % of {timing['workers']} worker(s) x "
              f"{timing['wall_s']:.0f} s wall (compile {timing['compile_s']:.0f} s, eval {timing['eval_s']:.0f} s, "
              f"checkpoints {timing['checkpoint_s']:.0f} s summed over runs)")
    if not args.no_fit:
        _cache(cfg)
        try:
            report(folder, n_bootstrap=args.bootstrap)
        except Exception as err:  # noqa: BLE001 - a fit never turns a finished sweep into a failure
            print(f"lm-sweep: the fit/report failed ({type(err).__name__}: {err}); the runs are saved - "
                  f"retry with `lm-sweep fit {folder}`", file=sys.stderr)
    return 1 if outcome.failed or outcome.blocked else 0

def _timing(folder: str, outcome: runner.SweepOutcome, cfg: configs_lib.SweepConfig) -> dict[str, Any]:
    """Where this invocation's wall time went; appended to <folder>/timing.jsonl."""
    rows = {r["run_id"]: r for r in results_lib.read_rows(folder)}
    trained = [rows[r] for r in outcome.trained if r in rows]
    workers = 1 if cfg.exec.backend == "inline" else cfg.exec.workers
    sums = {k: sum(float(r.get(k) or 0.0) for r in trained) for k in ("train_s", "compile_s", "eval_s",
                                                                       "checkpoint_s", "data_s", "wall_s")}
    run_wall_s = sums.pop("wall_s")
    timing = {"at": time.time(), "wall_s": outcome.wall_s, "workers": workers, "runs": len(trained),
              **sums, "run_wall_s": run_wall_s,
              "train_fraction": sums["train_s"] / (outcome.wall_s * workers) if trained and outcome.wall_s else None}
    from lm.io import append_jsonl
    append_jsonl(os.path.join(folder, "timing.jsonl"), timing)
    return timing


def cmd_status(args: argparse.Namespace) -> int:
    cfg = results_lib.load_sweep_config(args.dir)
    plan = make_plan(cfg)
    rows = {r["run_id"]: r for r in results_lib.read_rows(args.dir)}
    counts: dict[str, int] = {}
    lines = []
    for spec in plan.runs:
        run_dir = os.path.join(args.dir, "runs", spec.run_id)
        if spec.run_id in rows:
            row = rows[spec.run_id]
            state = row["status"]
            detail = f"loss {row['loss']:.4f}" if row.get("loss") is not None else row.get("message", "")
        else:
            fails = runner.failures(run_dir)
            step = runner.last_step(run_dir)
            if len(fails) > cfg.exec.max_retries:
                state, detail = "failed", fails[-1]["error"].splitlines()[-1]
            elif step is not None:
                state, detail = "started", f"step {step}/{spec.steps}" + (f", {len(fails)} failure(s)" if fails else "")
            else:
                state, detail = "pending", (f"{len(fails)} failure(s)" if fails else "")
        counts[state] = counts.get(state, 0) + 1
        lines.append(f"  {spec.run_id:<28} {state:<10} {detail}")
    print(f"{args.dir}: {len(plan.runs)} runs: " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())))
    print("\n".join(lines))
    return 0


def cmd_repair(args: argparse.Namespace) -> int:
    """Move the results table's bad lines (not JSON, no run_id, repeated runs) aside."""
    results_lib.load_sweep_config(args.dir)                     # refuse a folder that is not a sweep
    from lm.lock import FolderLock
    with FolderLock(args.dir, "sweep folder"):
        results_lib.repair(args.dir)                            # a torn last line
        moved = results_lib.repair_table(args.dir)
    for line, why in moved:
        print(f"line {line} {why}: moved to {os.path.join(args.dir, results_lib.REJECTED_FILE)}")
    print(f"{results_lib.results_path(args.dir)}: {len(moved)} bad line(s) moved aside; "
          f"{len(results_lib.read_rows(args.dir))} row(s) kept" +
          ("; their runs are recorded again by the next `lm-sweep run`" if moved else ""))
    return 0


def cmd_fit(args: argparse.Namespace) -> int:
    _cache(results_lib.load_sweep_config(args.dir))   # the fits' programs compile once, as the runs'
    report(args.dir, n_bootstrap=args.bootstrap)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lm-sweep", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run", help="plan, run (resuming), fit and report a sweep")
    p_plan = sub.add_parser("plan", help="print the plan as a table with a wall-time estimate")
    for p in (p_run, p_plan):
        p.add_argument("config", help="a config name in experiments/configs/ or a .py file")
        p.add_argument("--out", help="sweep folder (default: the config's out_dir or sweeps/<name>)")
        p.add_argument("--workers", type=int, help="override exec.workers")
        p.add_argument("--threads", type=int, help="override exec.threads")
    p_run.add_argument("--backend", choices=configs_lib.BACKENDS, help="override exec.backend")
    p_run.add_argument("--no-progress", action="store_true", help="no progress bars")
    p_run.add_argument("--no-fit", action="store_true", help="stop after the runs")
    p_run.add_argument("--retry-failed", action="store_true", help="retry runs that exhausted their retries")
    p_run.add_argument("--bootstrap", type=int, default=None,
                       help="bootstrap resamples (default: 1000 for >= 100 runs, else 10 per run, at least 200)")
    p_plan.add_argument("--probe", type=int, default=3, help="shapes to time for the estimate (0: none)")
    p_status = sub.add_parser("status", help="state of each run of a sweep folder")
    p_status.add_argument("dir")
    p_repair = sub.add_parser("repair", help="move bad lines of the results table aside (kept in "
                              f"{results_lib.REJECTED_FILE})")
    p_repair.add_argument("dir")
    p_fit = sub.add_parser("fit", help="fit and report from a sweep folder's results")
    p_fit.add_argument("dir")
    p_fit.add_argument("--bootstrap", type=int, default=None,
                       help="bootstrap resamples (default: 1000 for >= 100 runs, else 10 per run, at least 200)")
    args = parser.parse_args(argv)
    handlers = {"run": cmd_run, "plan": cmd_plan, "status": cmd_status, "fit": cmd_fit, "repair": cmd_repair}
    try:
        return handlers[args.command](args)
    except ValueError as e:
        print(f"lm-sweep: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
