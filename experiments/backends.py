"""Sweep back-ends: start runs and report the ones that ended. Inline (this process, one at a
time), a pool of long-lived worker processes, or one submitit job per run (SLURM or submitit's
local executor). Each has `slots`, `running()`, `start(spec, config)`, `wait(timeout)` and `close()`."""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import sys
import time
from typing import Any

from experiments.configs import SweepConfig
from experiments.sweep_sections import ExecConfig
from experiments.plan import RunSpec
from experiments.worker import compile_cache_dir, run_job, train_run, worker_env

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
            [sys.executable, "-m", "experiments.worker", "worker", str(os.getpid()), str(write_fd),
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
        self.cache_dir = compile_cache_dir(cfg.exec.compile_cache, cfg.directory) or ""
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
        self.cache_dir = compile_cache_dir(cfg.exec.compile_cache, cfg.directory) or ""
        self.executor = submitit.AutoExecutor(folder=os.path.join(cfg.directory, "submitit"),
                                              cluster=cfg.exec.cluster)
        params = dict(cfg.exec.slurm)
        params.setdefault("timeout_min", 60)
        if cfg.exec.cluster != "local":
            params.setdefault("cpus_per_task", cfg.exec.threads)
            params.setdefault("nodes", cfg.exec.nodes)
        params.setdefault("tasks_per_node", cfg.exec.tasks_per_node)
        self.executor.update_parameters(**params)
        self.jobs: dict[str, Any] = {}

    def running(self) -> list[str]:
        return list(self.jobs)

    def start(self, spec: RunSpec, config: dict[str, Any]) -> None:
        port = _free_port() if self.cfg.exec.processes_per_run > 1 else None   # the local executor's coordinator
        job = self.executor.submit(run_job, config, self.cfg.exec.threads, self.cache_dir, port)
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
                outcomes = job.results()          # one per task; process 0's says how the run ended
            except Exception as e:  # noqa: BLE001 - the job crashed or was cancelled
                done.append((run_id, {"ok": False, "error": f"submitit job {job.job_id} failed: {e}"[-4000:]}))
                continue
            failed = [o for o in outcomes if not o.get("ok")]
            done.append((run_id, failed[0] if failed else outcomes[0]))
        return done

    def close(self) -> None:
        for job in self.jobs.values():
            job.cancel(check=False)


BACKENDS = {"inline": InlineBackend, "pool": PoolBackend, "submitit": SubmititBackend}


def _free_port() -> int:
    """A TCP port free on this machine now (for a local multi-process job's coordinator)."""
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
