"""Activations are pinned by logical names through the same rules table as the parameters."""

import re

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec as P

from lm.config import MeshConfig, ModelConfig
from lm.model import forward, init_params
from lm.sharding import constrain, make_mesh, replicated, with_mesh


def test_constrain_maps_logical_names_on_the_traced_mesh_and_is_a_no_op_without_one():
    mesh = make_mesh(MeshConfig(data=2, fsdp=2, tensor=2))
    x = jax.device_put(jnp.ones((8, 4, 16)), replicated(mesh))    # on the mesh, not yet split
    pinned = jax.jit(with_mesh(lambda y: constrain(y * 2, "batch", "length", "vocab"), mesh))(x)
    assert pinned.sharding.spec == P(("data", "fsdp"), None, "tensor")
    resid = jax.jit(with_mesh(lambda y: constrain(y * 2, "batch", "length", "embed"), mesh))(x)
    assert resid.sharding.spec == P(("data", "fsdp"))        # embed's fsdp is taken by the batch
    assert constrain(x, "batch", "length", "vocab") is x        # no mesh: unchanged


def test_forward_under_a_mesh_pins_logits_and_keeps_the_numbers():
    cfg = ModelConfig(vocab_size=64, d_model=32, n_layers=2, n_heads=4, max_seq_len=16, d_ff=64,
                      compute_dtype="float32")
    mesh = make_mesh(MeshConfig(data=2, fsdp=2, tensor=2))
    params = jax.device_put(init_params(cfg, jax.random.PRNGKey(0)), replicated(mesh))
    tokens = jax.device_put(np.random.default_rng(0).integers(0, 64, (8, 16)).astype(np.int32), replicated(mesh))
    fn = jax.jit(with_mesh(lambda p, t: forward(p, t, cfg), mesh))
    pinned = sorted(re.findall(r"sharding_constraint %\S+ <@mesh, (\[.*?\])> : tensor<([0-9x]+)xf32>",
                               fn.lower(params, tokens).as_text()))
    batch, logits_spec = '[{"data", "fsdp"}, {}, {}]', '[{"data", "fsdp"}, {}, {"tensor"}]'
    assert pinned == sorted([('[{"tensor"}, {}]', "64x32"),      # the embedding table, gathered by vocab
                             (batch, "8x16x32"),                 # the embedded tokens
                             (batch, "8x16x32"),                 # each block's output (one scanned body)
                             (logits_spec, "8x16x64")]), pinned  # the logits
    logits = fn(params, tokens)
    assert logits.sharding.spec == P(("data", "fsdp"), None, "tensor")
    np.testing.assert_allclose(np.asarray(logits), np.asarray(forward(params, tokens, cfg)), rtol=1e-5, atol=1e-6)
