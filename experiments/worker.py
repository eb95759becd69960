"""One sweep run's process side: the environment a worker trains in, training one run from its
config dict (never raising), and the long-lived worker process of the pool back-end
(`python -m experiments.worker worker ...`). Used by experiments.backends."""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import signal
import sys
import traceback
from typing import Any

RUN_LOCK_WAIT_S = 60.0
"""How long a worker waits for a run folder whose previous holder (a killed worker) is exiting."""

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


def compile_cache_dir(setting: str, sweep_dir: str, environ: dict[str, str] | None = None) -> str | None:
    """The persistent compilation cache folder of ExecConfig.compile_cache `setting` for the sweep
    in `sweep_dir`: 'user' -> $LM_COMPILE_CACHE, else $XDG_CACHE_HOME/lm/xla, else ~/.cache/lm/xla;
    'sweep' -> sweep_dir/.jax_cache; 'none' -> None (no cache); anything else is the folder."""
    environ = os.environ if environ is None else environ
    if setting == "none":
        return None
    if setting == "sweep":
        return os.path.join(os.path.abspath(sweep_dir), ".jax_cache")
    if setting == "user":
        if environ.get("LM_COMPILE_CACHE"):
            return os.path.abspath(os.path.expanduser(environ["LM_COMPILE_CACHE"]))
        base = environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        return os.path.join(base, "lm", "xla")
    return os.path.abspath(os.path.expanduser(setting))


def configure_compile_cache(cache_dir: str | None) -> None:
    """Persistent XLA compilation cache: runs of one shape compile once (lm.compile_cache)."""
    from lm import compile_cache
    compile_cache.configure(cache_dir, min_compile_s=0.0)


def train_run(config: dict[str, Any], peak_flops: float | None = None, log_to_file: bool = True) -> dict[str, Any]:
    """Train one run from its TrainConfig dict; never raises. Returns {'ok', 'status'} or
    {'ok': False, 'error'}. Holds an exclusive lock on the run folder while training."""
    from lm.config import TrainConfig
    from lm.config_fields import from_dict
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


def run_job(config: dict[str, Any], threads: int, cache_dir: str | None, port: int | None = None) -> dict[str, Any]:
    """A submitit job (one task of it): set up XLA for `threads` threads and the cache, join the job's
    other processes when it has several (see join_job_processes), then train the run together."""
    local_rank = _local_rank()
    os.environ.update(worker_env(threads, index=local_rank))   # read when XLA's backend starts, not at import
    from lm import xla_env
    xla_env.apply()
    configure_compile_cache(cache_dir)
    try:
        join_job_processes(port)
    except Exception as e:  # noqa: BLE001 - one run's start-up failure must not stop the sweep
        return {"ok": False, "error": f"joining the job's processes failed: {type(e).__name__}: {e}"}
    outcome = train_run(config, log_to_file=local_rank in (None, 0))
    import jax
    return {**outcome, "process": jax.process_index(), "processes": jax.process_count()}


def _local_rank() -> int | None:
    """This task's local rank in a multi-process submitit job (its GPU, if any), else None."""
    import submitit
    env = submitit.JobEnvironment()
    return env.local_rank if env.num_tasks > 1 else None


def join_job_processes(port: int | None) -> bool:
    """Start jax.distributed for a submitit job of several tasks (True), or do nothing (one task).

    Under SLURM JAX finds the cluster itself (coordinator, process count and id from SLURM's
    variables). submitit's local executor sets no SLURM variables, so its tasks meet at
    127.0.0.1:`port` (chosen by the orchestrator) with submitit's own ranks."""
    import submitit
    env = submitit.JobEnvironment()
    if env.num_tasks == 1:
        return False
    import jax
    if env.name() == "slurm":
        jax.distributed.initialize()
        return True
    if port is None:
        raise ValueError(f"a {env.num_tasks}-task job on submitit's {env.name()!r} executor needs a coordinator "
                         "port (the sweep's submitit back-end passes one)")
    from lm.distributed import initialize
    return initialize(f"127.0.0.1:{port}", env.num_tasks, env.global_rank)


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
    """`python -m experiments.worker worker PARENT_PID RESULT_FD THREADS CORES CACHE`: read run
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


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "worker":
        return worker_main(argv[1:])
    print("usage: python -m experiments.worker worker PARENT_PID RESULT_FD THREADS CORES CACHE "
          "(started by lm-sweep; use lm-sweep to run sweeps)", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
