"""The adaptive sweep trained for real: killed between stages and inside a stage (SIGKILL of the
orchestrator), resumed, it ends with the results table and forecasts of an uninterrupted sweep.

The sweep is as small as still checks that: 3 stages (stage 3 preregistered), no edge sizes (so
stage sizes are fixed), 10 steps a run, 8 bootstrap resamples per forecast."""

import os
import signal
import subprocess
import sys
import time

import pytest

from experiments import forecasts
from experiments.results import results_path
from tiny_sweeps import ROOT, comparable_table, cli_env, write_adaptive_config



def _forecasts(folder):
    return [{k: v for k, v in r.items() if k not in ("at", "predicted_at")} for r in forecasts.read(folder)]


def _rows(folder):
    path = results_path(folder)
    return open(path, "rb").read().count(b"\n") if os.path.exists(path) else 0


def _cmd(config, folder):
    return [sys.executable, "-m", "experiments.sweep", "run", config, "--out", folder, "--no-progress", "--no-fit"]


def _run_until(config, folder, rows, timeout=900):
    """Start the sweep; SIGKILL it once the results table has >= `rows` rows (None: let it finish)."""
    proc = subprocess.Popen(_cmd(config, folder), env=cli_env(), cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    t0 = time.time()
    while proc.poll() is None and time.time() - t0 < timeout:
        if rows is not None and _rows(folder) >= rows:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.05)
    proc.wait(timeout=60)
    return proc


@pytest.mark.slow
def test_killed_between_and_inside_stages_resumes_to_the_uninterrupted_sweep(tmp_path):
    budgets = (3e8, 6e8, 1.2e9)
    config = write_adaptive_config(tmp_path / "tiny_adaptive.py", budgets=budgets, min_steps=10, edge_rounds=0,
                                   bootstrap=8)
    reference = str(tmp_path / "reference")
    done = _run_until(config, reference, None)
    assert done.returncode == 0, done.stderr.read()[-2000:]
    expected, expected_fc = comparable_table(reference), _forecasts(reference)
    assert [r["kind"] for r in expected_fc] == ["prediction", "observation"]    # stage 3's
    per_stage = [sum(r["budget"] == b for r in expected.values()) for b in budgets]
    first, second = per_stage[0], per_stage[0] + per_stage[1]
    killed = str(tmp_path / "killed")
    # Kill as stage 1's last row lands (between stages 1 and 2); then inside stage 3 (its first row).
    for rows in (first, second + 1):
        proc = _run_until(config, killed, rows)
        assert proc.returncode in (-signal.SIGKILL, 0)
    before = open(forecasts.path(killed)).read() if os.path.exists(forecasts.path(killed)) else ""
    finished = _run_until(config, killed, None)
    assert finished.returncode == 0, finished.stderr.read()[-2000:]
    assert open(forecasts.path(killed)).read().startswith(before)   # earlier rows kept as written
    assert comparable_table(killed) == expected
    assert _forecasts(killed) == expected_fc
