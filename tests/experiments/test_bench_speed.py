"""experiments.bench.matmul reads which kernel XLA CPU compiles a dot to (what BENCHMARKS.md's bf16
findings rest on): a bf16 x bf16 -> f32 dot goes to YNNPACK's bf16 kernel under XLA's defaults, a
bf16 x bf16 -> bf16 dot is upcast to float32 first, and without YNNPACK every bf16 dot is upcast."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.bench import matmul


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="XLA CPU's kernels")
@pytest.mark.parametrize("path, form, kernel", [
    ("xla", "f32", "ynn"),
    ("xla", "bf16_f32acc", "ynn"),
    ("xla", "bf16", "ynn+upcast"),
    ("no_lib", "f32", "xla"),
    ("no_lib", "bf16_f32acc", "xla+upcast"),
])
def test_the_kernel_of_each_path_and_form(path, form, kernel):
    compiled, args, found = matmul.build(path, form, "NN", (64, 32, 48))
    assert found == kernel
    want = np.asarray(args[0], np.float32) @ np.asarray(args[1], np.float32)
    np.testing.assert_allclose(np.asarray(compiled(*args), np.float32), want, rtol=0.02, atol=0.1)


@pytest.mark.parametrize("layout", ["NN", "NT", "TN"])
def test_operands_are_stored_in_their_layout(layout):
    a, b = matmul.operands(layout, 4, 3, 2, jnp.float32)
    dims = (matmul.DIMS[layout], ((), ()))
    assert jax.lax.dot_general(a, b, dims).shape == (4, 2)


def test_the_torch_comparison_builds_the_same_model_as_lm():
    import argparse

    from experiments.bench import torch_compare
    from lm.config import ModelConfig

    for preset, d, want in (("model", 256, dict(n_heads=4, head_dim=64, d_ff=1024, attn_scale=1 / 8, logit_mult=1.0)),
                            ("sweep", 8, dict(n_heads=1, head_dim=8, d_ff=24, attn_scale=1 / 8, logit_mult=0.5))):
        args = argparse.Namespace(**torch_compare.PRESETS[preset])
        spec = torch_compare.model_spec(args, d, "float32")
        assert {k: spec[k] for k in want} == want
        lm_cfg = ModelConfig(d_model=d, n_heads=spec["n_heads"], activation=spec["activation"])
        assert lm_cfg.ff_size == spec["d_ff"] and lm_cfg.head_size == spec["head_dim"]
