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
import glob
import json
import os
import selectors
import signal
import subprocess
import sys
import time
import traceback
from typing import Any

from experiments import results as results_lib
from experiments.configs import ExecConfig, SweepConfig
from experiments.plan import Plan, RunSpec, make_plan

ATTEMPTS_FILE = "attempts.json"
RUN_LOCK_WAIT_S = 60.0
"""How long a worker waits for a run folder whose previous holder (a killed worker) is exiting."""
_IGNORED_TRAIN_FIELDS = ("peak_flops", "progress", "tensorboard", "out_dir", "init_from")
"""Run-config fields that may differ from the plan in a finished run (measured, cosmetic, or paths)."""


def prepare(cfg: SweepConfig) -> Plan:
    """Validate, plan and check the folder; only then record sweep.json and plan.json in it."""
    cfg.validate()
    plan = make_plan(cfg)
    results_lib.check_sweep_dir(cfg)
    results_lib.record_sweep(cfg, plan)
    return plan


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


def _same_config(saved: dict[str, Any], planned: dict[str, Any]) -> bool:
    return all(saved.get(k) == planned.get(k) for k in set(saved) | set(planned) if k not in _IGNORED_TRAIN_FIELDS)


def finished_result(spec: RunSpec, cfg: SweepConfig) -> dict[str, Any] | None:
    """result.json of a run that finished (completed or diverged) with the planned config, else None."""
    planned = _json(dataclasses.asdict(spec.train_config(cfg, cfg.directory)))
    run_dir = planned["out_dir"]
    result = _read_json(os.path.join(run_dir, "result.json"))
    saved = _read_json(os.path.join(run_dir, "config.json"))
    if result is None or saved is None or result.get("status") not in results_lib.FINISHED:
        return None
    if not _same_config(saved, planned):
        raise ValueError(f"{run_dir} was trained with a different config than this sweep plans; refusing to "
                         "mix results. Start a new sweep folder (--out) or delete that run folder")
    return result


# ---------------------------------------------------------------------------------------------
# Training one run (in a worker, a submitit job or inline).

def _gpu_ids(env: dict[str, str]) -> list[str]:
    """The NVIDIA GPUs a process started with `env` may use: CUDA_VISIBLE_DEVICES if set, else
    the /dev/nvidiaN device files (no CUDA or JAX import in the parent)."""
    if "CUDA_VISIBLE_DEVICES" in env:
        return [g for g in env["CUDA_VISIBLE_DEVICES"].split(",") if g.strip() not in ("", "-1")]
    return sorted((p[len("/dev/nvidia"):] for p in glob.glob("/dev/nvidia[0-9]*")), key=int)


def worker_env(threads: int, base: dict[str, str] | None = None, index: int | None = None) -> dict[str, str]:
    """Environment of a worker: XLA on `threads` CPU threads, one host device (simulated device
    counts from the parent are dropped). On a GPU node, worker `index` gets one GPU of its own
    (CUDA_VISIBLE_DEVICES, round robin when there are more workers than GPUs) and JAX does not
    preallocate 75 % of its memory (XLA_PYTHON_CLIENT_PREALLOCATE=false); index None keeps the
    visible GPUs (a worker re-applying its environment). On CPU nodes nothing GPU-related is set."""
    env = dict(os.environ if base is None else base)
    flags = [f for f in env.get("XLA_FLAGS", "").split() if not f.startswith("--xla_force_host_platform_device_count")]
    if threads == 1 and not any(f.startswith("--xla_cpu_multi_thread_eigen") for f in flags):
        flags.append("--xla_cpu_multi_thread_eigen=false")
    env["XLA_FLAGS"] = " ".join(flags)
    env["TF_CPP_MIN_LOG_LEVEL"] = env.get("TF_CPP_MIN_LOG_LEVEL", "3")
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(threads)
    gpus = _gpu_ids(env)
    if gpus:
        if index is not None:
            env["CUDA_VISIBLE_DEVICES"] = gpus[index % len(gpus)]
        env["XLA_PYTHON_CLIENT_PREALLOCATE"] = env.get("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    return env


def configure_compile_cache(cache_dir: str | None) -> None:
    """Persistent XLA compilation cache: runs of one shape compile once per sweep.

    XLA's own GPU kernel/autotune caches are left off: JAX puts their paths (inside the cache
    folder) into the compile options, which would make every key depend on where the folder is."""
    if not cache_dir:
        return
    import jax
    os.makedirs(cache_dir, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", cache_dir)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    jax.config.update("jax_persistent_cache_enable_xla_caches", "none")


def train_run(config: dict[str, Any], peak_flops: float | None = None, log_to_file: bool = True) -> dict[str, Any]:
    """Train one run from its TrainConfig dict; never raises. Returns {'ok', 'status'} or
    {'ok': False, 'error'}. Holds an exclusive lock on the run folder while training."""
    from lm.config import TrainConfig, from_dict
    from lm.train import train

    try:
        cfg = from_dict(TrainConfig, config)
        if peak_flops:
            cfg = dataclasses.replace(cfg, peak_flops=peak_flops)
        os.makedirs(cfg.out_dir, exist_ok=True)
    except Exception as e:  # noqa: BLE001 - a bad run must not stop the sweep
        return {"ok": False, "error": f"{type(e).__name__}: {e}"}
    saved = None
    if log_to_file:                        # the run's stdout/stderr go to its train.log
        sys.stdout.flush()
        sys.stderr.flush()
        saved = (os.dup(1), os.dup(2))
        log = os.open(os.path.join(cfg.out_dir, "train.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(log)
    try:
        # lm.train locks the run folder; a killed predecessor may still be exiting: wait for it.
        # A run whose checkpoints are all corrupt starts over (deterministic: same result).
        result = train(cfg, restart=True, lock_wait_s=RUN_LOCK_WAIT_S)
        return {"ok": True, "status": result["status"]}
    except Exception as e:  # noqa: BLE001
        traceback.print_exc()
        return {"ok": False, "error": f"{type(e).__name__}: {e}"}
    finally:
        if saved is not None:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def run_job(config: dict[str, Any], threads: int, cache_dir: str | None) -> dict[str, Any]:
    """A submitit job: set up XLA for `threads` threads and the cache, then train the run."""
    os.environ.update(worker_env(threads))   # read when XLA's backend starts (first use), not at import
    from lm import xla_env
    xla_env.apply()
    configure_compile_cache(cache_dir)
    return train_run(config)


def _die_with_parent(parent_pid: int) -> None:
    """SIGKILL this process when its parent dies (Linux); exit now if it already has."""
    try:
        import ctypes
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)      # PR_SET_PDEATHSIG
    except OSError:
        pass
    if os.getppid() != parent_pid:
        os._exit(1)


def worker_main(argv: list[str]) -> int:
    """`python -m experiments.runner worker PARENT_PID RESULT_FD THREADS CORES CACHE`: read run
    configs (JSON lines) on stdin, train each, answer one JSON line per run on RESULT_FD."""
    parent_pid, result_fd, threads, cores, cache = int(argv[0]), int(argv[1]), int(argv[2]), argv[3], argv[4]
    _die_with_parent(parent_pid)
    if cores:
        try:
            os.sched_setaffinity(0, {int(c) for c in cores.split(",")})
        except (AttributeError, OSError):
            pass
    os.environ.update(worker_env(threads))
    from lm import xla_env
    xla_env.apply()                        # the project's pinned XLA flags (the user's win)
    configure_compile_cache(cache or None)
    from lm import flops as flops_lib
    peak = flops_lib.default_peak_flops()  # datasheet on accelerators
    out = os.fdopen(result_fd, "w")
    for line in sys.stdin:
        message = json.loads(line)
        outcome = train_run(message["config"], peak)
        out.write(json.dumps({"run_id": message["run_id"], **outcome}) + "\n")
        out.flush()
    return 0


# ---------------------------------------------------------------------------------------------
# Back-ends: start runs, report the ones that ended.

class InlineBackend:
    """Runs each run in this process when waited on (for debugging; one at a time)."""

    slots = 1

    def __init__(self, cfg: SweepConfig, progress: bool):
        self.queue: list[tuple[str, dict]] = []
        self.progress = progress
        self.peak: float | None = None

    def running(self) -> list[str]:
        return [run_id for run_id, _ in self.queue]

    def start(self, spec: RunSpec, config: dict[str, Any]) -> None:
        self.queue.append((spec.run_id, dict(config, progress=self.progress)))

    def wait(self, timeout: float) -> list[tuple[str, dict]]:
        done = []
        while self.queue:
            run_id, config = self.queue.pop(0)
            if self.peak is None:          # measured once, not once per run
                from lm import flops as flops_lib
                self.peak = flops_lib.default_peak_flops()  # datasheet on accelerators
            done.append((run_id, train_run(config, self.peak, log_to_file=False)))
        return done

    def close(self) -> None:
        pass


class _Worker:
    def __init__(self, index: int, ex: ExecConfig, sweep_dir: str, cache_dir: str):
        ncpu = os.cpu_count() or 1
        cores = ",".join(str((index * ex.threads + i) % ncpu) for i in range(ex.threads)) if ex.workers * ex.threads <= ncpu else ""
        read_fd, write_fd = os.pipe()
        os.makedirs(os.path.join(sweep_dir, "logs"), exist_ok=True)
        self.log = open(os.path.join(sweep_dir, "logs", f"worker-{index}.log"), "a")
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env = worker_env(ex.threads, index=index)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "experiments.runner", "worker", str(os.getpid()), str(write_fd),
             str(ex.threads), cores, cache_dir],
            stdin=subprocess.PIPE, stdout=self.log, stderr=subprocess.STDOUT, pass_fds=(write_fd,), env=env)
        os.close(write_fd)
        self.fd = read_fd
        os.set_blocking(read_fd, False)
        self.buffer = b""
        self.current: str | None = None

    def send(self, run_id: str, config: dict[str, Any]) -> None:
        self.current = run_id
        self.proc.stdin.write((json.dumps({"run_id": run_id, "config": config}) + "\n").encode())
        self.proc.stdin.flush()

    def close(self) -> None:
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self.fd)
        self.log.close()


class PoolBackend:
    """`workers` long-lived worker processes (each imports JAX once, pinned to `threads` cores).
    A worker that dies fails its current run (retried) and is replaced."""

    def __init__(self, cfg: SweepConfig, progress: bool):
        self.cfg = cfg
        self.slots = cfg.exec.workers
        self.cache_dir = os.path.join(os.path.abspath(cfg.directory), ".jax_cache")
        self.workers: list[_Worker | None] = [None] * self.slots
        self.selector = selectors.DefaultSelector()

    def running(self) -> list[str]:
        return [w.current for w in self.workers if w is not None and w.current]

    def start(self, spec: RunSpec, config: dict[str, Any]) -> None:
        for i, worker in enumerate(self.workers):
            if worker is None:
                worker = self.workers[i] = _Worker(i, self.cfg.exec, self.cfg.directory, self.cache_dir)
                self.selector.register(worker.fd, selectors.EVENT_READ, worker)
            if worker.current is None:
                worker.send(spec.run_id, config)
                return
        raise RuntimeError("no free worker")

    def wait(self, timeout: float) -> list[tuple[str, dict]]:
        done = []
        if not self.selector.get_map():
            time.sleep(timeout)
            return done
        for key, _ in self.selector.select(timeout):
            worker: _Worker = key.data
            try:
                chunk = os.read(worker.fd, 65536)
            except BlockingIOError:
                continue
            if not chunk:                  # the worker died
                code = worker.proc.wait()
                if worker.current:
                    done.append((worker.current, {"ok": False, "error": f"worker process died (exit code {code}); "
                                                  f"see {worker.log.name}"}))
                self.selector.unregister(worker.fd)
                worker.current = None
                worker.close()
                self.workers[self.workers.index(worker)] = None
                continue
            worker.buffer += chunk
            while b"\n" in worker.buffer:
                line, worker.buffer = worker.buffer.split(b"\n", 1)
                message = json.loads(line)
                worker.current = None
                done.append((message.pop("run_id"), message))
        return done

    def close(self) -> None:
        for worker in self.workers:
            if worker is not None:
                self.selector.unregister(worker.fd)
                worker.close()
        self.workers = [None] * self.slots


class SubmititBackend:
    """One submitit job per run (SLURM, or submitit's local executor with exec.cluster='local')."""

    def __init__(self, cfg: SweepConfig, progress: bool):
        import submitit
        self.cfg = cfg
        self.slots = cfg.exec.workers
        self.cache_dir = os.path.join(os.path.abspath(cfg.directory), ".jax_cache")
        self.executor = submitit.AutoExecutor(folder=os.path.join(cfg.directory, "submitit"),
                                              cluster=cfg.exec.cluster)
        params = dict(cfg.exec.slurm)
        params.setdefault("timeout_min", 60)
        if cfg.exec.cluster != "local":
            params.setdefault("cpus_per_task", cfg.exec.threads)
        self.executor.update_parameters(**params)
        self.jobs: dict[str, Any] = {}

    def running(self) -> list[str]:
        return list(self.jobs)

    def start(self, spec: RunSpec, config: dict[str, Any]) -> None:
        job = self.executor.submit(run_job, config, self.cfg.exec.threads, self.cache_dir)
        from lm.io import atomic_write_json
        atomic_write_json(os.path.join(config["out_dir"], "job.json"), {"job_id": str(job.job_id)})
        self.jobs[spec.run_id] = job

    def wait(self, timeout: float) -> list[tuple[str, dict]]:
        time.sleep(timeout)
        done = []
        for run_id, job in list(self.jobs.items()):
            if not job.done():
                continue
            del self.jobs[run_id]
            try:
                done.append((run_id, job.result()))
            except Exception as e:  # noqa: BLE001 - the job crashed or was cancelled
                done.append((run_id, {"ok": False, "error": f"submitit job {job.job_id} failed: {e}"[-4000:]}))
        return done

    def close(self) -> None:
        for job in self.jobs.values():
            job.cancel(check=False)


BACKENDS = {"inline": InlineBackend, "pool": PoolBackend, "submitit": SubmititBackend}


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


def run_sweep(cfg: SweepConfig, plan: Plan | None = None, *, observer: Observer | None = None,
              retry_failed: bool = False, log=None) -> SweepOutcome:
    """Run every unfinished run of the plan with cfg.exec's back-end; see the module docstring.

    Holds the sweep folder's lock throughout: a second `lm-sweep run` on the folder fails at once
    naming the holder (a killed holder's lock is taken over)."""
    from lm.lock import FolderLock
    plan = plan or prepare(cfg)
    with FolderLock(cfg.directory, "sweep folder"):
        return _run_sweep(cfg, plan, observer, retry_failed, log)


def _run_sweep(cfg: SweepConfig, plan: Plan, observer: Observer | None, retry_failed: bool, log) -> SweepOutcome:
    t0 = time.time()
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    folder = cfg.directory
    results_lib.repair(folder)
    rows = {row["run_id"]: row for row in results_lib.read_rows(folder)}
    specs = plan.by_id()
    outcome = SweepOutcome([], {}, {}, 0.0, [])
    configs = {r.run_id: _json(dataclasses.asdict(r.train_config(cfg, folder))) for r in plan.runs}

    def record(spec: RunSpec, result: dict[str, Any]) -> None:
        row = results_lib.make_row(spec, cfg.name, cfg.convention, result, configs[spec.run_id],
                                   attempts=len(failures(configs[spec.run_id]["out_dir"])) + 1)
        row["finished_at"] = time.time()
        results_lib.append_row(folder, row)
        rows[spec.run_id] = row
        outcome.recorded.append(spec.run_id)

    pending: list[RunSpec] = []
    for spec in plan.runs:
        if spec.run_id in rows:
            continue
        result = finished_result(spec, cfg)
        if result is not None:
            record(spec, result)
            continue
        run_dir = configs[spec.run_id]["out_dir"]
        if retry_failed and os.path.exists(os.path.join(run_dir, ATTEMPTS_FILE)):
            os.remove(os.path.join(run_dir, ATTEMPTS_FILE))
        past = failures(run_dir)
        if len(past) > cfg.exec.max_retries:
            outcome.failed[spec.run_id] = past[-1]["error"]
            continue
        pending.append(spec)
    if outcome.failed:
        log(f"{len(outcome.failed)} run(s) already failed {cfg.exec.max_retries + 1} times and are skipped "
            f"(lm-sweep run --retry-failed retries them): {sorted(outcome.failed)}")

    # Longest first, so the last runs to finish are short ones (makespan on several workers).
    pending.sort(key=lambda r: -r.flops_per_token * r.new_steps)
    bars = observer or Observer()
    backend = BACKENDS[cfg.exec.backend](cfg, bars.show_train_progress)
    bars.start(plan, set(rows), backend.slots)
    try:
        while pending or backend.running():
            for spec in list(pending):
                if len(backend.running()) >= backend.slots:
                    break
                if spec.parent is not None:
                    parent = rows.get(spec.parent)
                    if parent is None:
                        if spec.parent in outcome.failed or spec.parent in outcome.blocked:
                            outcome.blocked[spec.run_id] = f"its WSD trunk {spec.parent} failed"
                            pending.remove(spec)
                        continue
                    if parent["status"] != "completed":
                        outcome.blocked[spec.run_id] = f"its WSD trunk {spec.parent} {parent['status']}"
                        pending.remove(spec)
                        continue
                pending.remove(spec)
                os.makedirs(configs[spec.run_id]["out_dir"], exist_ok=True)
                backend.start(spec, configs[spec.run_id])
                bars.started(spec, configs[spec.run_id]["out_dir"])
            for run_id, ended in backend.wait(cfg.exec.poll_s):
                spec = specs[run_id]
                run_dir = configs[run_id]["out_dir"]
                result = _read_json(os.path.join(run_dir, "result.json")) if ended.get("ok") else None
                if result is not None and result.get("status") in results_lib.FINISHED:
                    record(spec, result)
                    outcome.trained.append(run_id)
                    if result["status"] == "diverged":
                        log(f"{run_id} diverged: {result.get('message', '')} (recorded, left out of fits)")
                    bars.ended(run_id, finished=True)
                    continue
                error = ended.get("error") or "the run ended without a finished result.json"
                n = _record_failure(run_dir, error)
                if n > cfg.exec.max_retries:
                    outcome.failed[run_id] = error
                    log(f"{run_id} failed {n} times, giving up: {error.splitlines()[-1] if error else ''}")
                    bars.ended(run_id, finished=False, failed=True)
                else:
                    log(f"{run_id} failed (attempt {n} of {cfg.exec.max_retries + 1}), will retry: "
                        f"{error.splitlines()[-1] if error else ''}")
                    pending.append(spec)
                    bars.ended(run_id, finished=False)
            bars.refresh()
    finally:
        bars.close()
        backend.close()
    outcome.wall_s = time.time() - t0
    return outcome


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "worker":
        return worker_main(argv[1:])
    print("usage: python -m experiments.runner worker PARENT_PID RESULT_FD THREADS CORES CACHE "
          "(started by lm-sweep; use lm-sweep to run sweeps)", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
