"""Same-process A/B of training-step variants: what a model option or the CPU compile options
(lm.xla_env.CPU_COMPILE_OPTIONS) do to the step, measured against each other in one process so a
shared machine's load moves every variant alike.

Each variant is a ModelConfig override list; `noopts=1` compiles it without the project's CPU compile
options (XLA's defaults: -O3, YNNPACK fusions). Rounds alternate between the variants with a 2048^3
float32 matmul before each step; the figure is each variant's best step against the best matmul.
Model as experiments.bench.step (vocab 1024, L4, d_ff 4d, heads of 64, seq 256, batch 16, AdamW).

    python -m experiments.bench.ab --d-model 256 before:noopts=1,scan_unroll=1 after:
    python -m experiments.bench.ab --d-model 512 --dtype bfloat16 einsum: xla:attention_impl=xla
"""

from __future__ import annotations

import argparse
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from experiments.bench.step import matmul_timer
from lm import flops as flops_lib
from lm.config import MeshConfig, ModelConfig
from lm.sharding import make_mesh
from lm.step import compile_steps
from lm.xla_env import OPT_OUT


def parse_variant(spec: str) -> tuple[str, dict, bool]:
    """'name:k=v,k=v' -> (name, ModelConfig overrides, without the compile options)."""
    name, _, body = spec.partition(":")
    overrides = {}
    for item in filter(None, body.split(",")):
        key, _, value = item.partition("=")
        overrides[key] = {"True": True, "False": False}.get(value, int(value) if value.isdigit() else value)
    return name, overrides, bool(overrides.pop("noopts", 0))


def build(cfg: ModelConfig, noopts: bool, mesh, tokens: np.ndarray) -> list:
    """[compiled step, state, batch, step times] of one variant."""
    previous = os.environ.get(OPT_OUT)
    os.environ[OPT_OUT] = "1" if noopts else "0"
    try:
        c = compile_steps(cfg, optax.adamw(1e-3), mesh)
    finally:
        if previous is None:
            del os.environ[OPT_OUT]
        else:
            os.environ[OPT_OUT] = previous
    state = c.init(jax.random.PRNGKey(0))
    batch = jax.device_put(tokens, c.batch_sharding)
    step = c.train_step.lower(state, batch).compile()
    state, metrics = step(state, batch)
    jax.block_until_ready(metrics)
    return [step, state, batch, []]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("variants", nargs="+", help="name:key=value,... (ModelConfig fields; noopts=1)")
    parser.add_argument("--d-model", type=int, default=256)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    mesh = make_mesh(MeshConfig(data=1), jax.devices()[:1])
    matmul_s = matmul_timer(jnp.float32)
    tokens = np.random.default_rng(0).integers(0, 1024, (16, 257)).astype(np.int32)
    d, built, flops = args.d_model, {}, {}
    for name, overrides, noopts in map(parse_variant, args.variants):
        cfg = ModelConfig(vocab_size=1024, d_model=d, n_layers=4, n_heads=max(d // 64, 1), max_seq_len=256,
                          d_ff=4 * d, compute_dtype=args.dtype, **overrides)
        built[name] = build(cfg, noopts, mesh, tokens)
        flops[name] = flops_lib.flops_per_token(cfg, 256, "6n_attn") * 16 * 256
    best_mm = min(matmul_s() for _ in range(3))
    for _ in range(args.rounds):
        for b in built.values():
            best_mm = min(best_mm, matmul_s())
            t0 = time.perf_counter()
            b[1], metrics = b[0](b[1], b[2])
            jax.block_until_ready(metrics)
            b[3].append(time.perf_counter() - t0)
    rate = 2 * 2048**3 / best_mm
    print(f"# d{d} L4 {args.dtype}, jax {jax.__version__}; best 2048^3 float32 matmul {rate / 1e9:.1f} GFLOP/s")
    for name, b in built.items():
        step_s = min(b[3])
        print(f"#   {name:24s} best step {step_s:.4f} s  {flops[name] / step_s / rate:.3f} of the matmul rate")


if __name__ == "__main__":
    main()
