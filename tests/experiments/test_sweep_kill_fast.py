"""The fast suite's sweep kill -9 test (issue 25): a one-run sweep on the process pool is killed
(orchestrator SIGKILL; its worker dies with it) once the run has a checkpoint, and the re-run's
table equals an uninterrupted sweep's. The slow suite kills at many random moments
(test_sweep.py, test_kill_properties.py)."""

import glob
import os
import signal
import subprocess
import sys
import time

from test_sweep import _check_lines
from tiny_sweeps import ROOT, cli_env, comparable_table, run_cli, write_config


def test_a_sweep_killed_mid_run_resumes_to_the_uninterrupted_table(tmp_path):
    config = write_config(tmp_path / "kill.py", budgets=(1.2e10,), targets=(5e3,), min_steps=40, checkpoints=3,
                          backend="pool", workers=1)
    reference, killed = str(tmp_path / "reference"), str(tmp_path / "killed")
    out = run_cli("run", config, "--out", reference, "--no-fit", "--no-progress", timeout=240)
    assert out.returncode == 0, out.stderr[-3000:]
    cmd = [sys.executable, "-m", "experiments.sweep", "run", config, "--out", killed, "--no-fit", "--no-progress"]
    proc = subprocess.Popen(cmd, env=cli_env(), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    sealed = os.path.join(killed, "runs", "*", "checkpoints", "*", "lm_manifest.json")
    while not glob.glob(sealed) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, "the sweep ended before it could be killed: " + proc.stderr.read().decode()[-2000:]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert _check_lines(killed) == 0
    final = run_cli("run", config, "--out", killed, "--no-fit", "--no-progress", timeout=240)
    assert final.returncode == 0, final.stderr[-3000:]
    assert _check_lines(killed) == 1 and comparable_table(killed) == comparable_table(reference)
    [run] = os.listdir(os.path.join(killed, "runs"))
    import json
    assert json.load(open(os.path.join(killed, "runs", run, "result.json")))["resumed_from"] > 0
