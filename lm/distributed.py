"""Multi-process start-up: `jax.distributed.initialize` from flags or environment variables.

One process per host (or several local CPU processes for testing). With no arguments and none of
the variables set, nothing happens and the run is single-process. On TPU pods, SLURM and other
clusters JAX detects the coordinator itself: set LM_DISTRIBUTED=auto.
"""

from __future__ import annotations

import os

import jax

ENV_COORDINATOR = "LM_COORDINATOR"      # host:port of process 0
ENV_NUM_PROCESSES = "LM_NUM_PROCESSES"
ENV_PROCESS_ID = "LM_PROCESS_ID"
ENV_LOCAL_DEVICES = "LM_LOCAL_CPU_DEVICES"  # CPU only: simulated devices per process
ENV_AUTO = "LM_DISTRIBUTED"             # 'auto': let JAX detect the cluster (TPU, SLURM, ...)


def initialize(coordinator: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, local_cpu_devices: int | None = None) -> bool:
    """Join a multi-process run if asked to (arguments override the LM_* variables).

    Must run before anything touches a device. Returns True when a distributed run was started.
    """
    coordinator = coordinator or os.environ.get(ENV_COORDINATOR)
    if num_processes is None and os.environ.get(ENV_NUM_PROCESSES):
        num_processes = int(os.environ[ENV_NUM_PROCESSES])
    if process_id is None and os.environ.get(ENV_PROCESS_ID):
        process_id = int(os.environ[ENV_PROCESS_ID])
    if local_cpu_devices is None and os.environ.get(ENV_LOCAL_DEVICES):
        local_cpu_devices = int(os.environ[ENV_LOCAL_DEVICES])
    if local_cpu_devices:
        jax.config.update("jax_num_cpu_devices", local_cpu_devices)
    if os.environ.get(ENV_AUTO) == "auto" and coordinator is None:
        jax.distributed.initialize()
        return True
    if coordinator is None:
        if num_processes not in (None, 1) or process_id not in (None, 0):
            raise ValueError("num_processes/process_id were given without a coordinator address; "
                             f"pass --coordinator HOST:PORT or set {ENV_COORDINATOR}")
        return False
    if num_processes is None or process_id is None:
        raise ValueError(f"coordinator {coordinator} needs num_processes and process_id "
                         f"(flags or {ENV_NUM_PROCESSES}/{ENV_PROCESS_ID})")
    if not 0 <= process_id < num_processes:
        raise ValueError(f"process_id={process_id} must be in [0, {num_processes})")
    jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes,
                               process_id=process_id)
    return True
