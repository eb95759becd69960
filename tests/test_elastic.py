"""Elastic resume: a checkpoint written under one mesh / device count / process count continues
under another with exactly the same token stream (every global batch hashed) and the same losses."""

import numpy as np
import pytest

import multiproc as mp

STEPS = ["steps=20", "checkpoint_every=10", "eval_every=0"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """20 steps straight on 1 process x 8 devices, mesh fsdp=8 (checkpoint at 10)."""
    base = tmp_path_factory.mktemp("elastic")
    out = base / "ref"
    mp.run(out, [*STEPS, "mesh.data=1", "mesh.fsdp=8"], devices=8, hashes=base / "ref.jsonl")
    return out, mp.hashes(base / "ref.jsonl"), mp.losses(out), mp.result(out)


def _check_continues(reference, out, hash_file, start: int) -> None:
    _, ref_hashes, ref_losses, ref_result = reference
    got = mp.hashes(hash_file)
    assert sorted(got) == list(range(start, 20))
    assert all(got[s] == ref_hashes[s] for s in got), "the token stream changed on resume"
    result = mp.result(out)
    assert result["resumed_from"] == start and result["steps"] == 20
    resumed = mp.losses(out)
    assert sorted(resumed) == list(range(1, 21))
    np.testing.assert_allclose([resumed[s] for s in range(start + 1, 21)],
                               [ref_losses[s] for s in range(start + 1, 21)], rtol=1e-5)
    assert result["eval_loss"] == pytest.approx(ref_result["eval_loss"], rel=1e-5)


@pytest.mark.slow
def test_resume_on_four_devices_under_another_mesh(reference, tmp_path):
    """Written on 8 devices with fsdp 8, resumed on 4 devices with data 2 x fsdp 2."""
    out = tmp_path / "run"
    mp.crashed_copy(reference[0], out, 10)
    mp.run(out, [*STEPS, "mesh.data=2", "mesh.fsdp=2"], devices=4, hashes=tmp_path / "h.jsonl")
    _check_continues(reference, out, tmp_path / "h.jsonl", 10)


@pytest.mark.slow
def test_two_processes_then_one(reference, tmp_path):
    """2 processes x 4 devices (fsdp 8 spans both) match the 1-process run; its step-10 checkpoint
    then resumes on a single process (8 devices, data 8)."""
    two = tmp_path / "two"
    mp.run(two, [*STEPS, "mesh.data=1", "mesh.fsdp=8"], devices=4, processes=2, hashes=tmp_path / "two.jsonl")
    assert mp.hashes(tmp_path / "two.jsonl") == reference[1]
    np.testing.assert_allclose(list(mp.losses(two).values()), list(reference[2].values()), rtol=1e-5)
    one = tmp_path / "one"
    mp.crashed_copy(two, one, 10)
    mp.run(one, [*STEPS, "mesh.data=8"], devices=8, hashes=tmp_path / "one.jsonl")
    _check_continues(reference, one, tmp_path / "one.jsonl", 10)
