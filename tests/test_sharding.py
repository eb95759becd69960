"""Sharded training on 8 simulated CPU devices equals one device; FSDP really splits the state."""

import jax
import numpy as np
import optax
import pytest

from lm.config import MeshConfig, ModelConfig
from lm import sharding as sh
from lm.step import compile_steps

CFG = ModelConfig(vocab_size=64, d_model=64, n_layers=2, n_heads=4, n_kv_heads=2, max_seq_len=32,
                  compute_dtype="float32")
MESHES = {
    "single": MeshConfig(1, 1, 1),
    "data8": MeshConfig(data=8),
    "fsdp8": MeshConfig(data=1, fsdp=8),
    "tensor2_data4": MeshConfig(data=4, tensor=2),
    "data2_fsdp2_tensor2": MeshConfig(data=2, fsdp=2, tensor=2),
}


def _run(mesh_cfg: MeshConfig, steps: int = 5):
    n = int(np.prod([s for s in (mesh_cfg.data, mesh_cfg.fsdp, mesh_cfg.tensor) if s > 0]))
    devices = jax.devices()[: (8 if -1 in (mesh_cfg.data, mesh_cfg.fsdp, mesh_cfg.tensor) else n)]
    mesh = sh.make_mesh(mesh_cfg, devices)
    compiled = compile_steps(CFG, optax.adamw(3e-3, weight_decay=0.1), mesh)
    state = compiled.init(jax.random.PRNGKey(0))
    rng = np.random.default_rng(0)
    losses = []
    for _ in range(steps):
        batch = rng.integers(0, CFG.vocab_size, (16, 33)).astype(np.int32)
        state, metrics = compiled.train_step(state, jax.device_put(batch, compiled.batch_sharding))
        losses.append(float(metrics["loss"]))
    return np.array(losses), state


@pytest.fixture(scope="module")
def single():
    return _run(MESHES["single"])


@pytest.mark.parametrize("name", [m for m in MESHES if m != "single"])
def test_mesh_matches_single_device(name, single, n_devices):
    assert n_devices == 8
    losses, state = _run(MESHES[name])
    base_losses, base_state = single
    np.testing.assert_allclose(losses, base_losses, rtol=1e-5)
    for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(base_state.params)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-3, atol=2e-4)  # Adam amplifies ulp noise in ~0 gradients


def test_fsdp_shards_params_and_optimizer_state():
    _, state = _run(MESHES["fsdp8"], steps=1)
    per_device = sh.per_device_bytes((state.params, state.opt_state))
    total = sum(x.nbytes for x in jax.tree.leaves((state.params, state.opt_state)))
    assert len(per_device) == 8
    assert max(per_device.values()) <= total / 6, (max(per_device.values()), total)


def test_tensor_parallel_shards_heads_and_mlp():
    _, state = _run(MESHES["tensor2_data4"], steps=1)
    layers = state.params["decoder"]["layers"]
    assert layers["attn"]["query"]["kernel"].sharding.spec == jax.sharding.PartitionSpec(None, None, "tensor", None)
    assert layers["mlp"]["up"]["kernel"].sharding.spec == jax.sharding.PartitionSpec(None, None, "tensor")
    # The Adam moments follow their parameter's sharding.
    mu = jax.tree.leaves(state.opt_state, is_leaf=lambda x: hasattr(x, "mu"))
    assert any(getattr(s, "mu", None) is not None for s in mu)


def test_indivisible_axis_is_replicated_not_an_error():
    mesh = sh.make_mesh(MeshConfig(data=4, tensor=2))
    spec = sh.logical_to_spec(jax.sharding.PartitionSpec("embed", "kv_heads", "head_dim"), (64, 1, 16), mesh)
    assert spec == jax.sharding.PartitionSpec(None, None, None)


@pytest.mark.parametrize("mesh,error", [
    (MeshConfig(data=3), "devices"),
    (MeshConfig(data=-1, fsdp=-1), "more than one -1"),
    (MeshConfig(data=0), "positive"),
    (MeshConfig(data=3, fsdp=-1), "do not divide"),
])
def test_bad_mesh_is_refused(mesh, error):
    with pytest.raises(ValueError, match=error):
        mesh.shape(8)


def test_batch_sharding_follows_the_rules_table():
    """The batch's spec comes from RULES['batch'] (declared once), not a second hard-coded copy."""
    mesh = sh.make_mesh(MeshConfig(data=2, fsdp=2, tensor=2))
    assert sh.batch_sharding(mesh, 3).spec == jax.sharding.PartitionSpec(sh.RULES["batch"], None, None)
    only_data = dict(sh.RULES, batch="data")
    assert sh.batch_sharding(mesh, rules=only_data).spec == jax.sharding.PartitionSpec("data", None)
    assert sh.batch_sharding(mesh).spec == sh.logical_to_spec(jax.sharding.PartitionSpec("batch", None), (8, 4), mesh)
