"""Two local CPU processes (jax.distributed on 127.0.0.1, gloo collectives) train like one process."""

import json
import os
import subprocess
import sys

import numpy as np

import pytest

from lm.io import read_jsonl

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARGS = ["model.vocab_size=64", "model.d_model=32", "model.n_layers=2", "model.n_heads=2",
        "model.max_seq_len=32", "model.d_ff=64", "model.compute_dtype=\"float32\"", "data.seq_len=32", "steps=3", "batch_size=8",
        "log_every=1", "eval_every=0", "eval_batches=1", "peak_flops=1e11", "progress=false",
        "tensorboard=false", "mesh.data=-1", "optim.warmup_steps=1"]


def _env():
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env.update(PYTHONPATH=ROOT, JAX_PLATFORMS="cpu")
    return env


def _losses(out_dir):
    return [r["loss"] for r in read_jsonl(os.path.join(out_dir, "metrics.jsonl")) if "loss" in r]


@pytest.mark.slow
def test_two_processes_match_one(tmp_path):
    single = str(tmp_path / "single")
    out = subprocess.run([sys.executable, "-m", "lm.train", "--local-cpu-devices", "4",
                          *ARGS, f'out_dir="{single}"'], env=_env(), capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]

    from multiproc import free_port
    port = free_port()
    multi = str(tmp_path / "multi")
    procs = [subprocess.Popen([sys.executable, "-m", "lm.train", "--coordinator", f"127.0.0.1:{port}",
                               "--num-processes", "2", "--process-id", str(i), "--local-cpu-devices", "2",
                               *ARGS, f'out_dir="{multi}"'], env=_env(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    single_losses, multi_losses = _losses(single), _losses(multi)
    assert len(single_losses) == 3
    np.testing.assert_allclose(multi_losses, single_losses, rtol=1e-5)
    assert json.loads(open(os.path.join(multi, "result.json")).read())["status"] == "completed"


# fsdp 8 across two processes is covered by test_elastic.test_two_processes_then_one.
MESHES = {"tensor": ["mesh.data=1", "mesh.tensor=8"]}                      # batch replicated on both hosts


@pytest.mark.slow
@pytest.mark.parametrize("mesh", sorted(MESHES))
def test_mesh_axes_spanning_processes_match_one_process(mesh, tmp_path):
    """Each process loads the rows its devices hold under the batch sharding: with `tensor` (or
    `fsdp` and `tensor`) across the two processes, 2 x 4 devices give the same batches (hashed)
    and losses as 1 process with 8 devices."""
    import multiproc as mp
    args = [*MESHES[mesh], "steps=3", "eval_every=0"]
    mp.run(tmp_path / "one", args, devices=8, hashes=tmp_path / "one.jsonl")
    mp.run(tmp_path / "two", args, devices=4, processes=2, hashes=tmp_path / "two.jsonl")
    assert mp.hashes(tmp_path / "two.jsonl") == mp.hashes(tmp_path / "one.jsonl")
    one, two = mp.losses(tmp_path / "one"), mp.losses(tmp_path / "two")
    assert sorted(one) == [1, 2, 3]
    np.testing.assert_allclose([two[s] for s in one], [one[s] for s in one], rtol=1e-5)
    assert mp.result(tmp_path / "two")["eval_loss"] == pytest.approx(mp.result(tmp_path / "one")["eval_loss"],
                                                                      rel=1e-5)


@pytest.mark.slow
def test_a_run_folder_one_process_sees_differently_stops_every_process_with_one_error(tmp_path):
    """Process 0 decides whether and from which step the run resumes; a process whose view of the
    folder differs (here: a host-local empty folder instead of the shared one) makes every process
    stop with the same clear error, instead of a hang or a silent fresh start on one host."""
    import multiproc as mp
    args = ["steps=2", "checkpoint_every=1", "eval_every=0"]
    mp.run(tmp_path / "src", args, devices=8)
    mp.crashed_copy(tmp_path / "src", tmp_path / "shared", 1)
    outs = mp.launch([tmp_path / "shared", tmp_path / "local"], args, devices=4, timeout=180)
    for code, err in outs:
        assert code == 2, err[-3000:]
        assert "process(es) [1] of 2: the checkpoints in" in err and "steps [1] process 0 sees" in err, err[-2000:]
        assert "filesystem every host shares" in err
    assert not (tmp_path / "shared" / "result.json").exists()
