"""The fast suite's multi-process test (issue 25): two processes joined by jax.distributed train a
data-parallel run (one CPU device each, mesh data=2), and a crash after its first checkpoint
resumes on two processes to the same losses, eval loss and token stream."""

import numpy as np
import pytest

import multiproc as mp

STEPS = ["steps=6", "checkpoint_every=3", "eval_every=0", "mesh.data=2", "keep_checkpoints=5"]


def test_two_processes_train_and_resume_data_parallel(tmp_path):
    straight = tmp_path / "straight"
    mp.run(straight, STEPS, devices=1, processes=2, hashes=tmp_path / "straight.jsonl", timeout=240)
    result = mp.result(straight)
    assert result["status"] == "completed" and result["steps"] == 6
    resumed = tmp_path / "resumed"
    mp.crashed_copy(straight, resumed, 3)
    mp.run(resumed, STEPS, devices=1, processes=2, hashes=tmp_path / "resumed.jsonl", timeout=240)
    again = mp.result(resumed)
    assert again["resumed_from"] == 3 and again["steps"] == 6
    hashes, ref = mp.hashes(tmp_path / "resumed.jsonl"), mp.hashes(tmp_path / "straight.jsonl")
    assert sorted(hashes) == [3, 4, 5] and all(hashes[s] == ref[s] for s in hashes)
    losses, ref_losses = mp.losses(resumed), mp.losses(straight)
    assert sorted(losses) == list(range(1, 7))
    np.testing.assert_array_equal([losses[s] for s in range(1, 7)], [ref_losses[s] for s in range(1, 7)])
    assert again["eval_loss"] == pytest.approx(result["eval_loss"], rel=0, abs=0)
