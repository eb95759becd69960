"""One writer per run folder and per sweep folder, with real processes: a second writer fails at
once naming the holder; a killed holder's lock is taken over."""

import dataclasses
import os
import signal
import subprocess
import sys
import time

import pytest

from lm.config import DataConfig, ModelConfig, OptimConfig, TrainConfig
from lm.config_io import save_json
from lm.lock import FolderBusy, FolderLock

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "experiments"))


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT
    return env


def _wait_for_holder(lock_path, pid, proc, timeout=240):
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if os.path.exists(lock_path) and f"pid {pid} " in open(lock_path).read():
            return
        time.sleep(0.05)
    raise AssertionError(f"{lock_path} never named pid {pid}: {proc.stderr.read().decode()[-2000:]}")


def test_lock_names_the_holder_and_dies_with_it(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from lm.lock import FolderLock; "
                               f"FolderLock({str(tmp_path)!r}).acquire(); print('held', flush=True); time.sleep(600)"],
                              env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert holder.stdout.readline().strip() == b"held"
    with pytest.raises(FolderBusy, match=f"in use by pid {holder.pid} on host"):
        FolderLock(str(tmp_path)).acquire()
    t0 = time.time()
    with pytest.raises(FolderBusy):
        FolderLock(str(tmp_path), wait_s=0.3).acquire()
    assert time.time() - t0 >= 0.3
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    with FolderLock(str(tmp_path)) as lock:             # the dead holder's lock is taken over
        assert f"pid {os.getpid()} " in open(lock.path).read()


def test_second_lm_train_on_a_run_folder_fails_at_once_naming_the_first(tmp_path):
    cfg = TrainConfig(model=ModelConfig(vocab_size=64, d_model=32, n_layers=1, n_heads=2, max_seq_len=32,
                                        compute_dtype="float32"),
                      data=DataConfig(seq_len=32), optim=OptimConfig(warmup_steps=5), steps=100000,
                      batch_size=8, eval_every=0, log_every=50, out_dir=str(tmp_path / "run"),
                      peak_flops=1e11, progress=False, tensorboard=False)
    save_json(cfg, str(tmp_path / "run.json"))
    cmd = [sys.executable, "-m", "lm.train", "--config", str(tmp_path / "run.json")]
    first = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_for_holder(str(tmp_path / "run" / ".lock"), first.pid, first)
        t0 = time.time()
        second = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=120)
        assert second.returncode == 2, second.stderr[-2000:]
        [line] = second.stderr.strip().splitlines()
        assert f"run folder {tmp_path / 'run'} is in use by pid {first.pid} on host" in line
        assert time.time() - t0 < 60 and first.poll() is None
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    with FolderLock(str(tmp_path / "run")):               # taken over after the kill
        pass


def test_second_sweep_fails_at_once_and_workers_lock_their_runs(tmp_path):
    from tiny_sweeps import cli_env, write_config
    config = write_config(tmp_path / "lock.py", budgets=(1.2e10,), targets=(5e3,), min_steps=400, workers=1)
    folder = str(tmp_path / "sweep")
    cmd = [sys.executable, "-m", "experiments.sweep", "run", config, "--out", folder, "--no-fit", "--no-progress"]
    first = subprocess.Popen(cmd, env=cli_env(), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_for_holder(os.path.join(folder, ".lock"), first.pid, first)
        second = subprocess.run(cmd, env=cli_env(), cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert second.returncode == 2
        assert f"sweep folder {folder} is in use by pid {first.pid}" in second.stderr
        runs = os.path.join(folder, "runs")
        deadline, locked = time.time() + 240, None
        while locked is None and time.time() < deadline and first.poll() is None:
            for run in os.listdir(runs) if os.path.isdir(runs) else []:
                path = os.path.join(runs, run, ".lock")
                if os.path.exists(path) and open(path).read().startswith("pid"):
                    locked = os.path.join(runs, run)
            time.sleep(0.05)
        assert locked is not None, first.stderr.read().decode()[-2000:]
        with pytest.raises(FolderBusy, match="run folder .* is in use by pid"):  # the worker holds it
            FolderLock(locked, "run folder").acquire()
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    deadline = time.time() + 30                        # its worker dies with it (PR_SET_PDEATHSIG)
    while True:
        try:
            FolderLock(folder).acquire().release()
            FolderLock(locked).acquire().release()
            break
        except FolderBusy:
            assert time.time() < deadline
            time.sleep(0.1)
