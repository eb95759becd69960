"""`lm-sweep`: plan -> run -> fit -> report, for IsoFLOP (and WSD) scaling sweeps.

    lm-sweep run default              # the main job (what `make sweep` runs): plan, run, fit, report
    lm-sweep run text                 # the real-text main job (`make sweep-text`): Python source, no download
    lm-sweep plan default             # the table of runs, with a wall-time estimate from a probe
    lm-sweep plan default budgets=[1e10,3e10] train.batch_size=16 exec.workers=1   # key=value overrides
    lm-sweep status sweeps/default    # which runs are done, running, failed, pending
    lm-sweep fit sweeps/default       # fits, report and plots from the results table
    lm-sweep repair sweeps/default    # move bad lines of the results table aside (kept)

CONFIG is a name in experiments/configs/ or a path to a Python file defining get_config(); `plan` and
`run` take key=value overrides of its fields after it (values as JSON, each checked against its type;
`lm-sweep --help-config` lists every field by section with its documentation).
Re-running `run` on the same folder resumes: finished runs are skipped, interrupted ones resume
from their checkpoints, failed ones are retried (up to exec.max_retries).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from typing import Any

from experiments import configs as configs_lib
from experiments import results as results_lib
from experiments import runner, worker
from experiments.plan import make_plan
from experiments.plan_table import estimate_seconds, format_plan, probe, probe_shapes
from experiments.progress import Bars
from experiments.report import report
from experiments.sweep_sections import BACKENDS
from lm.config_io import apply_overrides, help_config_action


def _config(args: argparse.Namespace) -> configs_lib.SweepConfig:
    """The named config with the command line's key=value overrides, then its flags, validated."""
    cfg = apply_overrides(configs_lib.load(args.config), args.overrides)
    changes: dict[str, Any] = {}
    if getattr(args, "out", None):
        changes["out_dir"] = args.out
    for name in ("backend", "workers", "threads"):
        if getattr(args, name, None) is not None:
            changes[f"exec.{name}"] = getattr(args, name)
    return configs_lib.replace(cfg, **changes).validate()


def _cache(cfg) -> None:
    worker.configure_compile_cache(worker.compile_cache_dir(cfg.exec.compile_cache, cfg.directory))


def cmd_plan(args: argparse.Namespace) -> int:
    cfg = _config(args)
    if cfg.adaptive is not None:
        from experiments.adaptive import describe_later_stages, first_stage_plan
        plan = first_stage_plan(cfg)
        print(f"adaptive sweep: {len(cfg.budgets)} stages; stage(s) 1-{cfg.adaptive.prior_stages} from the prior "
              f"({cfg.sizes.tokens_per_param_guess:g} tokens per parameter):")
    else:
        plan = make_plan(cfg)
    seconds = {}
    if args.probe > 0:
        cfg, _ = runner.resolve_dtype(cfg, plan)     # time the dtype the sweep's runs will use
        plan = dataclasses.replace(plan, config=cfg)  # (the runs do not depend on it)
        # time steps the way a worker runs them (threads, one device)
        os.environ.update(worker.worker_env(cfg.exec.threads))
        if hasattr(os, "sched_setaffinity") and cfg.exec.backend != "inline":
            os.sched_setaffinity(0, set(range(min(cfg.exec.threads, os.cpu_count() or 1))))
        _cache(cfg)
        shapes = probe_shapes(plan, args.probe)
        print(f"probing {len(shapes)} shape(s) for throughput ...", file=sys.stderr, flush=True)
        seconds = estimate_seconds(plan, probe(plan, shapes))
    print(format_plan(plan, seconds))
    if cfg.adaptive is not None:
        print("later stages, centred on the forecast:\n" + "\n".join(describe_later_stages(cfg)))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    cfg = _config(args)
    from lm import compile_cache
    compile_cache.check(worker.compile_cache_dir(cfg.exec.compile_cache, cfg.directory))
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
    rows = {r["run_id"]: r for r in results_lib.read_rows(args.dir)}
    plan = make_plan(cfg) if cfg.adaptive is None else _planned(args.dir)
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


def _planned(folder: str):
    """An adaptive sweep's runs planned so far (plan.json), as a Plan."""
    import json

    from experiments.plan import Plan, RunSpec
    from experiments.shapes import Shape
    with open(os.path.join(folder, results_lib.PLAN_FILE)) as f:
        runs = json.load(f)["runs"]
    fields = {f for f in RunSpec.__dataclass_fields__}
    specs = [RunSpec(**{k: (Shape(**v) if k == "shape" else tuple(v) if isinstance(v, list) else v)
                        for k, v in r.items() if k in fields}) for r in runs]
    return Plan(results_lib.load_sweep_config(folder), tuple(specs), ())


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
    """Holding the sweep folder's lock, the sweep report; with any lm-fit fitting or forecast option,
    lm-fit's pipeline on the sweep's table (its FLOP convention kept) into <dir>/fit/ (the options are
    lm-fit's: one parser)."""
    from pathlib import Path

    from experiments.report import fit_table
    from lm.lock import FolderLock
    from lm.scaling.bootstrap import sized_resamples
    from lm.scaling.fitoptions import FitOptions, fit_options
    from lm.scaling.pipeline import run_fit
    opts = fit_options(args)
    cfg = results_lib.load_sweep_config(args.dir)               # refuse a folder that is not a sweep
    _cache(cfg)                                                 # the fits' programs compile once, as the runs'
    with FolderLock(args.dir, "sweep folder"):                  # never beside a running `lm-sweep run`
        formats = ("png", "svg") if args.svg else ("png",)
        if opts == FitOptions(bootstrap=opts.bootstrap):
            report(args.dir, n_bootstrap=args.bootstrap, formats=formats)
            return 0
        table, fpt = fit_table(results_lib.load_results(args.dir), cfg.convention)
        if table.empty:
            raise ValueError(f"{args.dir} has no completed cosine run to fit yet; run the sweep further first")
        opts = dataclasses.replace(opts, bootstrap=sized_resamples(len(table), opts.bootstrap))
        return run_fit(table, opts, Path(args.dir) / "fit", title=f"lm-sweep fit {args.dir} ({len(table)} runs)",
                       flops_per_token=fpt, prog="lm-sweep", formats=formats)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lm-sweep", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--help-config", action=help_config_action(lambda: configs_lib.load("default"),
                                                                   "the `default` sweep's"),
                        help="list every sweep config field by section with its documentation, and exit")
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run", help="plan, run (resuming), fit and report a sweep")
    p_plan = sub.add_parser("plan", help="print the plan as a table with a wall-time estimate")
    for p in (p_run, p_plan):
        p.add_argument("config", help="a config name in experiments/configs/ or a .py file")
        p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                       help="overrides of the config's fields, e.g. exec.workers=1 budgets=[1e10,3e10] "
                            "train.optim.learning_rate=0.1 sizes.max_layers=3 (every field: --help-config)")
        p.add_argument("--out", help="sweep folder (default: the config's out_dir or sweeps/<name>)")
        p.add_argument("--workers", type=int, help="override exec.workers")
        p.add_argument("--threads", type=int, help="override exec.threads")
    p_run.add_argument("--backend", choices=BACKENDS, help="override exec.backend")
    p_run.add_argument("--no-progress", action="store_true", help="no progress bars")
    p_run.add_argument("--no-fit", action="store_true", help="stop after the runs")
    p_run.add_argument("--retry-failed", action="store_true", help="retry runs that exhausted their retries")
    p_run.add_argument("--bootstrap", type=int, default=None,
                       help="bootstrap resamples (default: 1000 for >= 100 runs, else 10 per run, at least 200)")
    p_plan.add_argument("--probe", type=int, default=1,
                        help="shapes to time for the estimate: 1 (the middle size, scaled by FLOPs; default), "
                             "2 (smallest, largest), 3 (and the middle), 0 (none)")
    p_status = sub.add_parser("status", help="state of each run of a sweep folder")
    p_status.add_argument("dir")
    p_repair = sub.add_parser("repair", help="move bad lines of the results table aside (kept in "
                              f"{results_lib.REJECTED_FILE})")
    p_repair.add_argument("dir")
    p_fit = sub.add_parser("fit", help="fit and report from a sweep folder's results; any lm-fit fitting or "
                           "forecast option (lm-fit --help) refits with it into <dir>/fit/")
    p_fit.add_argument("dir")
    p_fit.add_argument("--svg", action="store_true", help="write each figure as SVG too (default: PNG only)")
    from lm.scaling.fitoptions import add_fit_arguments
    add_fit_arguments(p_fit)
    args, extra = parser.parse_known_args(argv)
    if extra and (args.command not in ("plan", "run") or any(x.startswith("-") or "=" not in x for x in extra)):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if extra:                                     # overrides given after an option
        args.overrides = args.overrides + extra
    handlers = {"run": cmd_run, "plan": cmd_plan, "status": cmd_status, "fit": cmd_fit, "repair": cmd_repair}
    try:
        return handlers[args.command](args)
    except ValueError as e:
        print(f"lm-sweep: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
