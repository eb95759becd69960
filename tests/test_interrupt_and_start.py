"""Ctrl-C and a multi-process start with no peer, as a user meets them: one line each, no
traceback (issue 25 item 8)."""

import glob
import os
import re
import signal
import subprocess
import sys
import time

import pytest

import multiproc as mp

RUN = [*mp.TINY, "steps=300", "checkpoint_every=10", "log_every=10", "eval_every=0"]


def test_ctrl_c_says_the_step_and_the_rerun_resumes(tmp_path):
    """Saving every 2 steps, so that the Ctrl-C mostly lands inside a save (before lm.sigint, 5 of
    8 such runs printed orbax's tracebacks). The child starts with SIGINT at its default: a test
    run launched in the background by a non-interactive shell inherits SIGINT ignored, and Python
    then keeps ignoring it (the run trains to the end: exit 0)."""
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "lm.train", "--local-cpu-devices", "1", *RUN, "checkpoint_every=2",
           f'out_dir="{out}"']
    proc = subprocess.Popen(cmd, env=mp.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 240
    while not glob.glob(str(out / "checkpoints" / "*" / "lm_manifest.json")) and time.time() < deadline:
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err[-3000:]
    line = err.strip().splitlines()[-1]       # (orbax may warn of a slow save on a loaded machine)
    step = int(re.fullmatch(r"lm-train: interrupted at step (\d+); rerun the same command to resume", line).group(1))
    assert 2 <= step < 300
    rerun = subprocess.run(cmd, env=mp.env(), capture_output=True, text=True, timeout=240)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    result = mp.result(out)
    assert result["status"] == "completed" and 2 <= result["resumed_from"] <= step


def test_a_coordinator_with_no_peer_times_out_in_one_line(tmp_path):
    cmd = [sys.executable, "-m", "lm.train", "--coordinator", f"127.0.0.1:{mp.free_port()}", "--num-processes", "2",
           "--process-id", "0", "--coordinator-timeout", "3", "--local-cpu-devices", "1", *RUN,
           f'out_dir="{tmp_path / "run"}"']
    out = subprocess.run(cmd, env=mp.env(), capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stderr[-2000:]
    [line] = out.stderr.strip().splitlines()
    assert line.startswith("lm-train: error: process 0 of 2 waited 3 s at coordinator 127.0.0.1:") and \
        "--coordinator-timeout" in line
    assert not os.path.exists(tmp_path / "run")


@pytest.fixture
def python_sigint():
    """SIGINT at Python's own handler for an in-process test, whatever the launcher left (a
    background job inherits it ignored); restored after."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_deferred_sigint_raises_after_the_block_and_keeps_its_own_errors(python_sigint):
    from lm import sigint
    reached = []
    with pytest.raises(KeyboardInterrupt):
        with sigint.deferred():
            signal.raise_signal(signal.SIGINT)
            reached.append("after the signal")
            with sigint.deferred():                 # nested: the outer block raises, once
                signal.raise_signal(signal.SIGINT)
            reached.append("end of block")
    assert reached == ["after the signal", "end of block"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    with pytest.raises(ValueError):                 # the block's own error is the one raised
        with sigint.deferred():
            signal.raise_signal(signal.SIGINT)
            raise ValueError("the block's error")
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_between_steps_turns_the_first_ctrl_c_into_a_request_and_the_second_into_an_interrupt(python_sigint):
    from lm import sigint
    with sigint.between_steps() as interrupted:
        assert not interrupted()
        signal.raise_signal(signal.SIGINT)
        assert interrupted()                        # a request: the loop stops where it chooses
        with sigint.deferred():                     # a save inside the loop: no-op, the request waits
            pass
        with pytest.raises(KeyboardInterrupt):      # a second Ctrl-C: at once
            signal.raise_signal(signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_ctrl_c_during_a_save_leaves_it_whole_and_sealed(tmp_path, python_sigint):
    """The CI failure of 2026-12-07: SIGINT inside orbax's save left its event loop closed under
    its threads. The save is now handed over first; the interrupt comes after, and the checkpoint
    verifies."""
    import jax.numpy as jnp
    from lm.checkpoint import Checkpoints
    ckpts = Checkpoints(str(tmp_path / "checkpoints"))
    real_save = ckpts.manager.save

    def save_hit_by_ctrl_c(*args, **kwargs):
        signal.raise_signal(signal.SIGINT)          # arrives as orbax starts the save
        return real_save(*args, **kwargs)

    ckpts.manager.save = save_hit_by_ctrl_c
    with pytest.raises(KeyboardInterrupt):
        ckpts.save(7, {"w": jnp.arange(4.0)}, {"position": 7}, {"step": 7})
    ckpts.close()
    assert ckpts.all_steps() == [7] and ckpts.problem(7) is None
