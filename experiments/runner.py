"""Execute a sweep's plan: inline, on a local pool of worker processes, or through submitit (SLURM).

Each run lives in `<sweep_dir>/runs/<run_id>/` (config.json, metrics.jsonl, checkpoints,
result.json, train.log). The orchestrator (`run_sweep`) is the only writer of the results table;
a run is finished when its row is there. Re-running a sweep:

- skips runs with a row; records (without re-training) runs whose result.json says they finished;
- resumes interrupted runs from their newest checkpoint (lm.train does this bit-identically);
- retries failed runs (an exception, or a worker that died) up to `max_retries` times, counted
  across invocations in `<run_dir>/attempts.json` (`--retry-failed` resets the count);
- records diverged runs with status 'diverged' (fits leave them out) and never retries them.

One run's crash never stops the sweep. WSD cooldowns wait for their trunk run. Worker processes
die with the orchestrator (PR_SET_PDEATHSIG) and take an exclusive lock on their run directory,
so a killed-and-restarted sweep never has two processes training the same run.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from typing import Any

from experiments import results as results_lib
from experiments.backends import BACKENDS
from experiments import configs as configs_lib
from experiments.configs import SweepConfig
from experiments.plan import Plan, RunSpec, make_plan
from experiments.schedule import Scheduler
from lm.config import RESUME_CHANGES
from lm.config_fields import differences, with_field_defaults

ATTEMPTS_FILE = "attempts.json"
CORPUS_FILE = "corpus.json"
"""A corpus: source's recipe, content SHA-256, tokenizer and tokens per epoch (lm.data.corpus)."""
DTYPE_FILE = "compute_dtype.json"
"""How a sweep's compute dtype 'auto' was decided (lm.precision.Choice), written when first decided."""


def prepare(cfg: SweepConfig) -> Plan:
    """Validate, plan, resolve a compute dtype 'auto' and check the folder; only then record
    sweep.json and plan.json (and how the dtype was decided, in compute_dtype.json) in it."""
    cfg.validate()
    if cfg.adaptive is not None:                  # the later stages are planned as results come in
        from experiments.adaptive import first_stage_plan
        plan = first_stage_plan(cfg)
    else:
        plan = make_plan(cfg)
    cfg, choice = resolve_dtype(cfg, plan)
    plan = dataclasses.replace(plan, config=cfg)      # the runs do not depend on the dtype
    check_memory(cfg, plan)
    results_lib.check_sweep_dir(cfg)
    corpus = _prepare_corpus(cfg) if cfg.train.data.source.startswith("corpus:") else None
    results_lib.record_sweep(cfg, plan)
    if corpus is not None:
        from lm.io import atomic_write_json
        atomic_write_json(os.path.join(cfg.directory, CORPUS_FILE), corpus)
    if choice is not None and choice.by != "recorded":
        from lm.io import atomic_write_json
        atomic_write_json(os.path.join(cfg.directory, DTYPE_FILE), choice.record())
    return plan


def check_memory(cfg: SweepConfig, plan: Plan) -> None:
    """Refuse a sweep whose largest run cannot fit (lm.memory) before any worker starts: a pool's
    workers train at once and share a CPU host's RAM; on GPUs each has its own device."""
    import jax

    from lm.memory import check_fits
    if cfg.exec.backend == "submitit" or not plan.runs:
        return                  # its runs train on other machines, each checks its own
    inline = cfg.exec.backend == "inline"
    devices = jax.local_devices() if inline else jax.local_devices()[:1]
    for spec in plan.runs:
        try:
            check_fits(spec.train_config(cfg, cfg.directory), len(devices), devices,
                       concurrent=1 if inline else cfg.exec.workers)
        except ValueError as e:
            raise ValueError(f"run {spec.run_id}: {e}".replace("allow_swap=true", "exec.allow_swap=true")) from None


def _prepare_corpus(cfg: SweepConfig) -> dict[str, Any]:
    """Materialize a corpus: source, train its tokenizer and tokenize both splits once, here (the
    workers then load them); its recipe, content hash and tokens per split for corpus.json."""
    from lm.data import corpus as corpus_lib
    from lm.data import tfds_text
    from lm.data.pipeline import build_dataset
    data, vocab = cfg.train.data, cfg.train.model.vocab_size
    record = corpus_lib.materialize(data.source, tfds_text.corpus_root(data.data_dir)).record()
    for split in (data.train_split, data.eval_split):
        ds = build_dataset(data, split, vocab_size_hint=vocab, max_seq_len=data.seq_len)
        record[f"{split}_tokens"] = int(len(ds.tokens))
    record["tokens_per_epoch"] = record[f"{data.train_split}_tokens"]
    record["tokenizer"] = {"type": data.tokenizer_type, "vocab_size": vocab}
    return record


def resolve_dtype(cfg: SweepConfig, plan: Plan) -> tuple[SweepConfig, Any]:
    """(cfg with one concrete model.compute_dtype for every run, how it was decided) when the model
    says 'auto' (a scaling law across mixed precisions is wrong): the dtype the folder's sweep.json
    recorded (a resumed sweep keeps it), else the platform / CPU-flag table at the plan's
    largest model (lm.precision), decided once here. Unchanged, with None, for an explicit dtype and
    for the submitit back-end, whose runs train on other machines: each of its runs resolves its
    own 'auto' there (and records it in its config.json)."""
    from lm import precision
    if cfg.train.model.compute_dtype != "auto" or cfg.exec.backend == "submitit" or not plan.runs:
        return cfg, None
    sweep_json = _read_json(os.path.join(cfg.directory, results_lib.SWEEP_FILE)) or {}
    recorded = configs_lib.with_train_template(sweep_json).get("train", {}).get("model", {})
    if recorded.get("compute_dtype") == "auto":      # a sweep begun on submitit: its runs resolve it
        return cfg, None
    largest = max(plan.runs, key=lambda r: r.params).train_config(cfg, cfg.directory).model
    choice = precision.resolve("auto", recorded=recorded.get("compute_dtype"), d_model=largest.d_model,
                               tokens=cfg.tokens_per_step, d_ff=largest.ff_size)
    model = dataclasses.replace(cfg.train.model, compute_dtype=choice.dtype)
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, model=model)), choice


def _json(value: Any) -> Any:
    return json.loads(json.dumps(value, default=float))


# ---------------------------------------------------------------------------------------------
# One run's bookkeeping.

def _read_json(path: str) -> Any:
    try:
        with open(path) as f:
            return json.load(f)
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def failures(run_dir: str) -> list[dict[str, Any]]:
    return (_read_json(os.path.join(run_dir, ATTEMPTS_FILE)) or {}).get("failures", [])


def _record_failure(run_dir: str, error: str) -> int:
    from lm.io import atomic_write_json
    past = failures(run_dir) + [{"error": error[-4000:], "at": time.time()}]
    atomic_write_json(os.path.join(run_dir, ATTEMPTS_FILE), {"failures": past})
    return len(past)


def finished_result(spec: RunSpec, cfg: SweepConfig) -> dict[str, Any] | None:
    """result.json of a run that finished (completed or diverged) with the planned config, else None."""
    train_cfg = spec.train_config(cfg, cfg.directory)
    planned = _json(dataclasses.asdict(train_cfg))
    run_dir = planned["out_dir"]
    result = _read_json(os.path.join(run_dir, "result.json"))
    saved = _read_json(os.path.join(run_dir, "config.json"))
    if result is None or saved is None or result.get("status") not in results_lib.FINISHED:
        return None
    if planned["model"]["compute_dtype"] == "auto":   # submitit: the run resolved it on its machine
        planned["model"]["compute_dtype"] = saved.get("model", {}).get("compute_dtype")
    if differences(with_field_defaults(saved, train_cfg, planned), planned, RESUME_CHANGES):
        raise ValueError(f"{run_dir} was trained with a different config than this sweep plans; refusing to "
                         "mix results. Start a new sweep folder (--out) or delete that run folder")
    return result


# ---------------------------------------------------------------------------------------------
# What the orchestrator reports as it goes (the CLI draws progress bars from it).

class Observer:
    """Hooks called by run_sweep; the default does nothing."""

    show_train_progress = False
    """Inline back-end: let lm.train draw its own bar for the run in progress."""

    def start(self, plan: Plan, done: set[str], slots: int) -> None:
        pass

    def started(self, spec: RunSpec, run_dir: str) -> None:
        pass

    def ended(self, run_id: str, finished: bool, failed: bool = False) -> None:
        pass

    def refresh(self) -> None:
        pass

    def close(self) -> None:
        pass


def last_step(run_dir: str) -> int | None:
    """The newest step a run logged (the tail of its metrics.jsonl), or None."""
    path = os.path.join(run_dir, "metrics.jsonl")
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 4096))
            lines = f.read().split(b"\n")
    except OSError:
        return None
    for line in reversed(lines):
        try:
            return int(json.loads(line)["step"])
        except (ValueError, KeyError, TypeError):
            continue
    return None


# ---------------------------------------------------------------------------------------------
# The orchestrator.

@dataclasses.dataclass
class SweepOutcome:
    """What one invocation of run_sweep did."""

    recorded: list[str]
    """Runs whose rows this invocation appended."""
    failed: dict[str, str]
    """Runs that exhausted their retries: the last error."""
    blocked: dict[str, str]
    """Runs that could not start (a WSD trunk failed or diverged): why."""
    wall_s: float
    trained: list[str]
    """Runs this invocation trained (or resumed) to the end."""

    @staticmethod
    def combine(passes: list["SweepOutcome"], wall_s: float) -> "SweepOutcome":
        """One outcome for several passes (an adaptive sweep's stages)."""
        total = SweepOutcome([], {}, {}, wall_s, [])
        for p in passes:
            total.recorded.extend(p.recorded)
            total.trained.extend(p.trained)
            total.failed.update(p.failed)
            total.blocked.update(p.blocked)
        return total


def run_sweep(cfg: SweepConfig, plan: Plan | None = None, *, observer: Observer | None = None,
              retry_failed: bool = False, log=None) -> SweepOutcome:
    """Run every unfinished run of the plan with cfg.exec's back-end; see the module docstring.

    Holds the sweep folder's lock throughout: a second `lm-sweep run` on the folder fails at once
    naming the holder (a killed holder's lock is taken over)."""
    from lm.lock import FolderLock
    plan = plan or prepare(cfg)
    with FolderLock(cfg.directory, "sweep folder"):
        if cfg.adaptive is not None:
            from experiments.stages import run_stages
            t0 = time.time()
            passes = run_stages(cfg, lambda stage_plan: run_plan(cfg, stage_plan, observer, retry_failed, log), log)
            return SweepOutcome.combine(passes, time.time() - t0)
        return run_plan(cfg, plan, observer, retry_failed, log)


def run_plan(cfg: SweepConfig, plan: Plan, observer: Observer | None, retry_failed: bool, log) -> SweepOutcome:
    """Run the plan's unfinished runs (the caller holds the folder's lock)."""
    t0 = time.time()
    sweep = _Sweep(cfg, plan, log or (lambda msg: print(msg, file=sys.stderr, flush=True)))
    pending = sweep.pending(retry_failed)
    bars = observer or Observer()
    backend = BACKENDS[cfg.exec.backend](cfg, bars.show_train_progress)
    bars.start(plan, set(sweep.rows), backend.slots)
    scheduler = Scheduler(compiled=[sweep.specs[r] for r in sweep.rows if r in sweep.specs])
    try:
        while pending or backend.running():
            _start_runs(sweep, scheduler, pending, backend, bars)
            for run_id, ended in backend.wait(cfg.exec.poll_s):
                retry = sweep.ended(run_id, ended, bars)
                if retry:
                    pending.append(sweep.specs[run_id])
                elif run_id in sweep.rows:
                    scheduler.ended(sweep.specs[run_id], sweep.rows[run_id])
            bars.refresh()
    finally:
        bars.close()
        backend.close()
    sweep.outcome.wall_s = time.time() - t0
    return sweep.outcome


def _start_runs(sweep: "_Sweep", scheduler: Scheduler, pending: list[RunSpec], backend, bars: Observer) -> None:
    """Fill the back-end's free slots with the runs the scheduler picks (a WSD cooldown only once
    its trunk has a row)."""
    while len(backend.running()) < backend.slots:
        ready = [spec for spec in list(pending) if not sweep.waits_for_trunk(spec, pending)]
        spec = scheduler.pick(ready, backend.running())
        if spec is None:
            return
        pending.remove(spec)
        run_dir = sweep.configs[spec.run_id]["out_dir"]
        os.makedirs(run_dir, exist_ok=True)
        backend.start(spec, sweep.configs[spec.run_id])
        scheduler.started(spec)
        bars.started(spec, run_dir)


class _Sweep:
    """The orchestrator's state during one invocation: the table's rows, each run's config, the outcome."""

    def __init__(self, cfg: SweepConfig, plan: Plan, log):
        cfg = resolve_dtype(cfg, plan)[0]     # the dtype prepare() recorded: one for every run
        self.cfg, self.log, self.folder = cfg, log, cfg.directory
        results_lib.repair(self.folder)
        self.rows = {row["run_id"]: row for row in results_lib.read_rows(self.folder)}
        self.specs = plan.by_id()
        self.plan = plan
        self.outcome = SweepOutcome([], {}, {}, 0.0, [])
        self.configs = {r.run_id: _json(dataclasses.asdict(r.train_config(cfg, self.folder))) for r in plan.runs}

    def record(self, spec: RunSpec, result: dict[str, Any]) -> None:
        """Append the run's row to the results table."""
        config = self.configs[spec.run_id]
        row = results_lib.make_row(spec, self.cfg.name, self.cfg.convention, result, config,
                                   attempts=len(failures(config["out_dir"])) + 1)
        row["finished_at"] = time.time()
        results_lib.append_row(self.folder, row)
        self.rows[spec.run_id] = row
        self.outcome.recorded.append(spec.run_id)

    def pending(self, retry_failed: bool) -> list[RunSpec]:
        """The runs left to train, longest first (so the last to finish are short ones: makespan on
        several workers); finished runs without a row are recorded, exhausted ones are skipped."""
        pending: list[RunSpec] = []
        for spec in self.plan.runs:
            if spec.run_id in self.rows:
                continue
            result = finished_result(spec, self.cfg)
            if result is not None:
                self.record(spec, result)
                continue
            run_dir = self.configs[spec.run_id]["out_dir"]
            if retry_failed and os.path.exists(os.path.join(run_dir, ATTEMPTS_FILE)):
                os.remove(os.path.join(run_dir, ATTEMPTS_FILE))
            past = failures(run_dir)
            if len(past) > self.cfg.exec.max_retries:
                self.outcome.failed[spec.run_id] = past[-1]["error"]
                continue
            pending.append(spec)
        if self.outcome.failed:
            self.log(f"{len(self.outcome.failed)} run(s) already failed {self.cfg.exec.max_retries + 1} times and "
                     f"are skipped (lm-sweep run --retry-failed retries them): {sorted(self.outcome.failed)}")
        return sorted(pending, key=lambda r: -r.flops_per_token * r.new_steps)

    def waits_for_trunk(self, spec: RunSpec, pending: list[RunSpec]) -> bool:
        """True while a WSD cooldown's trunk has no row yet; a cooldown whose trunk failed, was
        blocked or diverged is blocked (and taken out of `pending`)."""
        if spec.parent is None:
            return False
        parent = self.rows.get(spec.parent)
        if parent is None:
            if spec.parent in self.outcome.failed or spec.parent in self.outcome.blocked:
                self.outcome.blocked[spec.run_id] = f"its WSD trunk {spec.parent} failed"
                pending.remove(spec)
            return True
        if parent["status"] != "completed":
            self.outcome.blocked[spec.run_id] = f"its WSD trunk {spec.parent} {parent['status']}"
            pending.remove(spec)
            return True
        return False

    def ended(self, run_id: str, ended: dict[str, Any], bars: Observer) -> bool:
        """Record a run that ended with a finished result.json, or count its failure; True = retry it."""
        spec, run_dir = self.specs[run_id], self.configs[run_id]["out_dir"]
        result = _read_json(os.path.join(run_dir, "result.json")) if ended.get("ok") else None
        if result is not None and result.get("status") in results_lib.FINISHED:
            self.record(spec, result)
            self.outcome.trained.append(run_id)
            if result["status"] == "diverged":
                self.log(f"{run_id} diverged: {result.get('message', '')} (recorded, left out of fits)")
            bars.ended(run_id, finished=True)
            return False
        error = ended.get("error") or "the run ended without a finished result.json"
        last = error.splitlines()[-1] if error else ""
        n = _record_failure(run_dir, error)
        if n > self.cfg.exec.max_retries:
            self.outcome.failed[run_id] = error
            self.log(f"{run_id} failed {n} times, giving up: {last}")
            bars.ended(run_id, finished=False, failed=True)
            return False
        self.log(f"{run_id} failed (attempt {n} of {self.cfg.exec.max_retries + 1}), will retry: {last}")
        bars.ended(run_id, finished=False)
        return True
