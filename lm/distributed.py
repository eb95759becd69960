"""Multi-process start-up: `jax.distributed.initialize` from flags or environment variables.

One process per host (or several local CPU processes for testing). With no arguments and none of
the variables set, nothing happens and the run is single-process. On TPU pods, SLURM and other
clusters JAX detects the coordinator itself: set LM_DISTRIBUTED=auto.
"""

from __future__ import annotations

import json
import os
from typing import Any

import jax
import numpy as np

ENV_COORDINATOR = "LM_COORDINATOR"      # host:port of process 0
ENV_NUM_PROCESSES = "LM_NUM_PROCESSES"
ENV_PROCESS_ID = "LM_PROCESS_ID"
ENV_LOCAL_DEVICES = "LM_LOCAL_CPU_DEVICES"  # CPU only: simulated devices per process
ENV_AUTO = "LM_DISTRIBUTED"             # 'auto': let JAX detect the cluster (TPU, SLURM, ...)
ENV_TIMEOUT = "LM_COORDINATOR_TIMEOUT"  # seconds to wait for every process to join
DEFAULT_TIMEOUT_S = 120


def initialize(coordinator: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, local_cpu_devices: int | None = None,
               timeout_s: int | None = None) -> bool:
    """Join a multi-process run if asked to (arguments override the LM_* variables).

    Must run before anything touches a device. Returns True when a distributed run was started.
    Processes that do not all join within `timeout_s` seconds (LM_COORDINATOR_TIMEOUT, default
    120) are a one-line ValueError naming the coordinator.
    """
    timeout_s = _int_or_env(timeout_s, ENV_TIMEOUT, "--coordinator-timeout") or DEFAULT_TIMEOUT_S
    coordinator = coordinator or os.environ.get(ENV_COORDINATOR)
    num_processes = _int_or_env(num_processes, ENV_NUM_PROCESSES, "--num-processes")
    process_id = _int_or_env(process_id, ENV_PROCESS_ID, "--process-id")
    local_cpu_devices = _int_or_env(local_cpu_devices, ENV_LOCAL_DEVICES, "--local-cpu-devices")
    auto = os.environ.get(ENV_AUTO) == "auto" and coordinator is None
    if coordinator is None and not auto:
        if num_processes not in (None, 1) or process_id not in (None, 0):
            raise ValueError(f"--num-processes {num_processes} / --process-id {process_id} were given without "
                             f"a coordinator address; pass --coordinator HOST:PORT (process 0's address) or set "
                             f"{ENV_COORDINATOR}, or {ENV_AUTO}=auto on a cluster JAX detects itself")
    if local_cpu_devices is not None and local_cpu_devices < 1:
        raise ValueError(f"--local-cpu-devices {local_cpu_devices} must be at least 1")
    if local_cpu_devices:
        jax.config.update("jax_num_cpu_devices", local_cpu_devices)
    if auto:
        jax.distributed.initialize()
        return True
    if coordinator is None:
        return False
    if num_processes is None or process_id is None:
        raise ValueError(f"coordinator {coordinator} needs num_processes and process_id "
                         f"(flags or {ENV_NUM_PROCESSES}/{ENV_PROCESS_ID})")
    if num_processes < 1 or not 0 <= process_id < num_processes:
        raise ValueError(f"process_id={process_id} must be in [0, {num_processes})")
    _join(coordinator, num_processes, process_id, timeout_s)
    return True


def _join(coordinator: str, num_processes: int, process_id: int, timeout_s: int) -> None:
    """jax.distributed.initialize, given `timeout_s` seconds. JAX's own timeout aborts the process
    from C++ with a stack trace; a watchdog thread says what happened in one line and exits (2)
    first (nothing has been written yet)."""
    import sys
    import threading

    def give_up() -> None:
        print(f"lm-train: error: process {process_id} of {num_processes} waited {timeout_s} s at coordinator "
              f"{coordinator} and not every process joined; start all {num_processes} processes with the same "
              f"--coordinator (process 0 on that host:port), or raise --coordinator-timeout ({ENV_TIMEOUT})",
              file=sys.stderr, flush=True)
        os._exit(2)

    watchdog = threading.Timer(timeout_s, give_up)
    watchdog.daemon = True
    watchdog.start()
    try:
        jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes,
                                   process_id=process_id, initialization_timeout=timeout_s + 60)
    finally:
        watchdog.cancel()


def _int_or_env(value: int | None, variable: str, flag: str) -> int | None:
    """`value`, else the integer in environment variable `variable` (a clear error when it is not one)."""
    if value is not None or not os.environ.get(variable):
        return value
    try:
        return int(os.environ[variable])
    except ValueError:
        raise ValueError(f"{variable}={os.environ[variable]!r} is not an integer; set it (or {flag}) to "
                         "a whole number") from None


def broadcast_json(value: Any) -> Any:
    """Process 0's `value` (anything JSON-able) on every process: decisions that depend on what a
    host reads from the run folder are made once, by process 0, so hosts cannot disagree and hang."""
    if jax.process_count() == 1:
        return value
    from jax.experimental import multihost_utils
    data = json.dumps(value).encode() if jax.process_index() == 0 else b""
    n = int(multihost_utils.broadcast_one_to_all(np.int32(len(data))))
    buffer = np.zeros(n, np.uint8)
    if jax.process_index() == 0:
        buffer[:] = np.frombuffer(data, np.uint8)
    return json.loads(bytes(np.asarray(multihost_utils.broadcast_one_to_all(buffer))))


def check_all_agree(ok: bool, what: str, fix: str) -> None:
    """Raise the same ValueError on every process unless every process passes `ok` (each
    process's own check of what process 0 decided): one clear error instead of a hang."""
    if jax.process_count() == 1:
        if not ok:
            raise ValueError(f"{what}; {fix}")
        return
    from jax.experimental import multihost_utils
    flags = np.asarray(multihost_utils.process_allgather(np.int32(ok))).reshape(-1)
    bad = [i for i, flag in enumerate(flags) if not flag]
    if bad:
        raise ValueError(f"process(es) {bad} of {len(flags)}: {what}; {fix}")
