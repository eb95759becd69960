"""Properties under any kill (issue 25, slow suite): lm-train, or a sweep's orchestrator or one of its
workers, killed with SIGKILL at a moment hypothesis draws (anywhere from start-up to the end), then
run again with the same command: the final metrics.jsonl, result.json and results.jsonl equal an
uninterrupted run's, timing fields aside."""

import json
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import multiproc as mp

pytestmark = pytest.mark.slow

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "experiments"))
from tiny_sweeps import ROOT, cli_env, run_cli, write_config  # noqa: E402

RESULT_TIMING = {"wall_s", "compile_s", "train_s", "first_step_s", "eval_s", "checkpoint_s", "data_s",
                 "tokens_per_s", "mfu", "peak_flops", "resumed_from", "checkpoint_problems", "out_dir"}
ROW_TIMING = {"tokens_per_s", "mfu"}
TRAIN = [*mp.TINY, "steps=30", "checkpoint_every=5", "eval_every=10", "log_every=5", "keep_checkpoints=3"]
SETTINGS = settings(max_examples=4, deadline=None, derandomize=True,
                    suppress_health_check=list(HealthCheck))


def run_record(run_dir) -> tuple[list[dict], dict]:
    """(metrics.jsonl rows, result.json) of a run folder without the fields that vary between executions."""
    rows = [{k: v for k, v in r.items() if k not in ROW_TIMING} for r in mp.read_jsonl(os.path.join(run_dir,
                                                                                              "metrics.jsonl"))]
    with open(os.path.join(run_dir, "result.json")) as f:
        result = {k: v for k, v in json.load(f).items() if k not in RESULT_TIMING}
    return rows, result


def _kill_after(cmd, seconds: float, env, victim=lambda proc: proc) -> int | None:
    """Start `cmd`, SIGKILL `victim(proc)` (a psutil.Process) after `seconds`; its exit code if it ended first."""
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + seconds
    while time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    if proc.poll() is None:
        target = victim(psutil.Process(proc.pid))
        if target is not None:
            try:
                target.send_signal(signal.SIGKILL)
            except psutil.NoSuchProcess:      # it exited on its own first: nothing was killed
                pass
    if victim is _a_worker:
        return proc.wait(timeout=600)       # the orchestrator goes on (it retries the run)
    proc.kill()
    return proc.wait()


def _a_worker(orchestrator: psutil.Process) -> psutil.Process | None:
    """A live worker of the sweep, None when there is none at this moment (a worker that has just
    exited is a zombie, or gone, while it is listed: psutil cannot read its command line)."""
    workers = []
    for p in orchestrator.children():
        try:
            if "experiments.worker" in " ".join(p.cmdline()):
                workers.append(p)
        except (psutil.ZombieProcess, psutil.NoSuchProcess):
            continue
    return workers[0] if workers else None


@pytest.fixture(scope="module")
def train_reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("kill_train") / "ref"
    t0 = time.time()
    mp.run(out, TRAIN, devices=1)
    return run_record(out), time.time() - t0


@given(moment=st.floats(0.0, 1.0))
@SETTINGS
def test_lm_train_killed_at_any_moment_ends_as_an_uninterrupted_run(train_reference, tmp_path_factory, moment):
    (expected, wall) = train_reference
    out = tmp_path_factory.mktemp("killed") / "run"
    cmd = [sys.executable, "-m", "lm.train", "--local-cpu-devices", "1", *TRAIN, f'out_dir="{out}"']
    _kill_after(cmd, moment * wall, mp.env())
    mp.run(out, TRAIN, devices=1)
    assert run_record(out) == expected


@pytest.fixture(scope="module")
def sweep_reference(tmp_path_factory):
    base = tmp_path_factory.mktemp("kill_sweep")
    config = write_config(base / "kill.py", budgets=(1.2e10, 1.8e10), targets=(5e3,), min_steps=20,
                          checkpoints=3, backend="pool", workers=2)
    folder = str(base / "ref")
    t0 = time.time()
    out = run_cli("run", config, "--out", folder, "--no-fit", "--no-progress", timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return config, _sweep_record(folder), time.time() - t0


def _sweep_record(folder) -> dict:
    from tiny_sweeps import comparable_table
    runs = os.path.join(folder, "runs")
    return {"table": comparable_table(folder), "runs": {r: run_record(os.path.join(runs, r)) for r in sorted(os.listdir(runs))}}


@given(moment=st.floats(0.0, 1.0), victim=st.sampled_from(["orchestrator", "worker"]))
@SETTINGS
def test_a_sweep_killed_at_any_moment_ends_as_an_uninterrupted_sweep(sweep_reference, tmp_path_factory, moment,
                                                                     victim):
    config, expected, wall = sweep_reference
    folder = str(tmp_path_factory.mktemp("killed_sweep") / "sweep")
    cmd = [sys.executable, "-m", "experiments.sweep", "run", config, "--out", folder, "--no-fit", "--no-progress"]
    _kill_after(cmd, moment * wall, cli_env(), _a_worker if victim == "worker" else (lambda p: p))
    out = run_cli("run", config, "--out", folder, "--no-fit", "--no-progress", timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert _sweep_record(folder) == expected
