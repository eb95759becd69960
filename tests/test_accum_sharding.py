"""Gradient accumulation keeps every micro-batch spread over all batch devices, on every mesh:
same update as the full batch, and no resharding of the batch inside the compiled step."""

import re

import jax
import numpy as np
import optax
import pytest

from lm.config import MeshConfig, ModelConfig
from lm.sharding import make_mesh
from lm.step import compile_steps, split_micro

CFG = ModelConfig(vocab_size=64, d_model=32, n_layers=1, n_heads=4, max_seq_len=32, d_ff=64,
                  compute_dtype="float32")
MESHES = {"data": MeshConfig(data=8), "fsdp": MeshConfig(data=1, fsdp=8),
          "tensor": MeshConfig(data=2, fsdp=1, tensor=4)}


def test_micro_batch_i_is_rows_i_strided():
    x = np.arange(12 * 3).reshape(12, 3)
    micro = np.asarray(split_micro(x, 4))
    assert micro.shape == (4, 3, 3)
    for i in range(4):
        np.testing.assert_array_equal(micro[i], x[i::4])


def _reshards(hlo: str) -> dict[str, int]:
    """Counts of the ops that move data between devices in a compiled step: all-to-all, and any
    collective on int32 token rows (the batch)."""
    counts = {"all-to-all": 0, "batch collective": 0}
    for line in hlo.splitlines():
        for op in ("all-to-all", "all-gather", "collective-permute", "all-reduce"):
            found = re.search(rf" {op}(-start)?\(", line)
            if not found:
                continue
            if op == "all-to-all":
                counts["all-to-all"] += 1
            if "s32[" in line[:found.start()].split("=", 1)[-1]:
                counts["batch collective"] += 1
    return counts


@pytest.mark.parametrize("mesh_name", sorted(MESHES))
def test_accumulation_matches_full_batch_without_moving_the_batch(mesh_name, capfd):
    """grad_accum 4 == 1 (loss, gradient norm, update); neither compiled step has an all-to-all or a
    collective on the token rows (a contiguous split has: each micro-batch would sit on a quarter
    of the devices), and XLA reports no full rematerialisation."""
    mesh = make_mesh(MESHES[mesh_name])
    batch = np.random.default_rng(0).integers(0, 64, (32, 33)).astype(np.int32)
    out, reshards = [], []
    for accum in (1, 4):
        c = compile_steps(CFG, optax.sgd(1000.0), mesh, grad_accum=accum)
        state = c.init(jax.random.PRNGKey(0))
        before = jax.device_get(state.params)
        device_batch = jax.device_put(batch, c.batch_sharding)
        reshards.append(_reshards(c.train_step.lower(state, device_batch).compile().as_text()))
        state, metrics = c.train_step(state, device_batch)
        update = jax.tree.map(lambda new, old: np.asarray(new) - old, state.params, before)   # = -1000 x gradient
        out.append((float(metrics["loss"]), float(metrics["grad_norm"]), update))
    assert "Involuntary full rematerialization" not in capfd.readouterr().err
    assert reshards == [{"all-to-all": 0, "batch collective": 0}] * 2, f"{mesh_name}: {reshards} (accum 1, 4)"
    assert out[0][0] == pytest.approx(out[1][0], rel=1e-5)
    assert out[0][1] == pytest.approx(out[1][1], rel=1e-4)
    for a, b in zip(jax.tree.leaves(out[0][2]), jax.tree.leaves(out[1][2])):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5 * np.abs(a).max())
