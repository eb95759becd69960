"""What a kill, a damaged record or a changed config leaves behind is handled in one line, and the
run ends as an uninterrupted one would (issue 25 items 3, 4, 5, 7; issue 24 item 9)."""

import dataclasses
import glob
import json
import os
import shutil

import jax
import numpy as np
import pytest

from lm import checkpoint as ckpt_lib
from lm.train import main, train
from test_checkpoint_integrity import (_as_if_killed_after, compile_once, final_state,  # noqa: F401
                                             rows_without_timing, tiny)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    folder = tmp_path_factory.mktemp("reference") / "run"
    cfg = tiny(folder)
    assert train(cfg)["status"] == "completed"
    return str(folder), cfg, final_state(str(folder), cfg)


def _copy(reference, tmp_path):
    ref_dir, ref_cfg, _ = reference
    run_dir = str(tmp_path / "run")
    shutil.copytree(ref_dir, run_dir)
    return run_dir, dataclasses.replace(ref_cfg, out_dir=run_dir)


def _same_as_reference(reference, run_dir, cfg):
    ref_dir, _, (ref_state, ref_data) = reference
    state, data = final_state(run_dir, cfg)
    assert data == ref_data
    for a, b in zip(jax.tree.leaves(ref_state), jax.tree.leaves(state)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert rows_without_timing(run_dir) == rows_without_timing(ref_dir)


def _snapshot(folder):
    """Every file under `folder` with its bytes (what 'nothing was touched' compares)."""
    out = {}
    for root, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, folder)] = f.read()
    return out


@pytest.mark.parametrize("sealed_before", [None, 5])
def test_a_kill_during_a_checkpoint_sets_the_unsealed_one_aside_in_one_line(reference, tmp_path, capsys,
                                                                           sealed_before):
    """Orbax committed checkpoint 5 (or 10), the kill came before the seal: the first rerun (and
    every later one) sets it aside with one line and resumes from the previous sealed one or step 0."""
    run_dir, cfg = _copy(reference, tmp_path)
    unsealed = 10 if sealed_before else 5
    _as_if_killed_after(run_dir, unsealed)
    if not sealed_before:
        os.remove(os.path.join(run_dir, "config.json"))     # a first checkpoint: config.json may be missing too
    os.remove(os.path.join(run_dir, "checkpoints", str(unsealed), ckpt_lib.MANIFEST))
    result = train(cfg)
    assert result["status"] == "completed" and result["resumed_from"] == (sealed_before or 0)
    [line] = result["checkpoint_problems"]
    assert "\n" not in line and f"checkpoint step {unsealed}" in line and "never sealed" in line
    assert f"lm-train: {line}" in capsys.readouterr().err
    _same_as_reference(reference, run_dir, cfg)


@pytest.mark.parametrize("result_json", [None, b"garbage{", b""])
def test_a_kill_between_the_final_checkpoint_and_result_json_logs_no_second_final_eval(reference, tmp_path,
                                                                                      result_json):
    run_dir, cfg = _copy(reference, tmp_path)
    path = os.path.join(run_dir, "result.json")
    os.remove(path)
    if result_json is not None:
        with open(path, "wb") as f:
            f.write(result_json)
    result = train(cfg)
    assert result["status"] == "completed" and result["resumed_from"] == cfg.steps
    _same_as_reference(reference, run_dir, cfg)
    ref = json.load(open(os.path.join(reference[0], "result.json")))
    assert result["eval_loss"] == ref["eval_loss"] and result["eval_curve"] == ref["eval_curve"]


@pytest.mark.parametrize("killed_after", [None, 10])
def test_without_config_json_a_different_config_is_refused_against_the_checkpoint(reference, tmp_path, capsys,
                                                                                 killed_after):
    """config.json deleted: the config the newest checkpoint carries decides; a different request is
    refused in one line (exit 2) and nothing in the folder changes."""
    run_dir, cfg = _copy(reference, tmp_path)
    if killed_after:
        _as_if_killed_after(run_dir, killed_after)
    os.remove(os.path.join(run_dir, "config.json"))
    before = _snapshot(run_dir)
    config = tmp_path / "other.json"
    from lm.config_io import save_json
    save_json(dataclasses.replace(cfg, optim=dataclasses.replace(cfg.optim, learning_rate=2e-2)), str(config))
    assert main(["--config", str(config)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "optim.learning_rate" in err and "checkpoint step" in err, err
    assert _snapshot(run_dir) == before


@pytest.mark.parametrize("text, what", [(b"{garbage", "not valid JSON"), (b"", "empty"),
                                        (b'{"model": {"d_mod', "not valid JSON"), (b"[1, 2]", "JSON list")])
def test_a_damaged_config_json_names_the_file_the_problem_and_the_fix(reference, tmp_path, capsys, text, what):
    run_dir, cfg = _copy(reference, tmp_path)
    path = os.path.join(run_dir, "config.json")
    with open(path, "wb") as f:
        f.write(text)
    config = tmp_path / "same.json"
    from lm.config_io import save_json
    save_json(cfg, str(config))
    assert main(["--config", str(config)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and path in err and what in err and "delete it" in err, err


def test_a_failed_start_leaves_nothing_behind(tmp_path, capsys):
    """A start refused after the run folder was locked (here: no text file matches the source)
    removes the folder it created, .lock included."""
    out = tmp_path / "new" / "run"
    cfg = dataclasses.replace(tiny(out), data=dataclasses.replace(tiny(out).data, source="text:" + str(
        tmp_path / "none" / "*.txt")))
    with pytest.raises((ValueError, FileNotFoundError)):
        train(cfg)
    assert not os.path.exists(tmp_path / "new")


def test_out_dir_under_proc_and_a_lock_that_is_a_folder_are_one_line(tmp_path, capsys):
    assert main([f"out_dir=/proc/lm-test/run", "steps=2", "optim.warmup_steps=1"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "/proc/lm-test/run" in err, err
    os.makedirs(tmp_path / "run" / ".lock")
    assert main([f"out_dir={tmp_path / 'run'}", "steps=2", "optim.warmup_steps=1"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and ".lock is a folder" in err and "rmdir" in err, err
    assert glob.glob(str(tmp_path / "run" / "*")) == []
