"""Training-step benchmark: compile time, step time, tokens/s and MFU for d_model 256, 512, 1024.

MFU's denominator is the float32 matmul rate measured by this script in the same process (a large
jitted jnp.dot), so the figure says how close the step gets to what this machine's matmuls can do.
FLOPs per step use the '6n_attn' convention (what XLA executes: 6N + non-causal attention).

    python experiments/bench.py                 # all sizes, float32 and bfloat16 compute
    python experiments/bench.py --sizes 512 --dtypes float32 --steps 10
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import time

import jax
import numpy as np
import optax

from lm import flops as flops_lib
from lm.config import MeshConfig, ModelConfig
from lm.sharding import make_mesh
from lm.step import compile_steps


def bench_model(cfg: ModelConfig, batch: int, seq: int, steps: int, peak: float, mesh) -> dict:
    compiled = compile_steps(cfg, optax.adamw(1e-3), mesh)
    state = compiled.init(jax.random.PRNGKey(0))
    rng = np.random.default_rng(0)
    data = jax.device_put(rng.integers(0, cfg.vocab_size, (batch, seq + 1)).astype(np.int32),
                          compiled.batch_sharding)
    t0 = time.perf_counter()
    step = compiled.train_step.lower(state, data).compile()
    compile_s = time.perf_counter() - t0
    state, m = step(state, data)          # warm-up
    jax.block_until_ready(m)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        state, m = step(state, data)
        jax.block_until_ready(m)
        times.append(time.perf_counter() - t0)
    step_s = float(np.median(times))
    flops_step = flops_lib.flops_per_token(cfg, seq, "6n_attn") * batch * seq
    return {"d_model": cfg.d_model, "n_layers": cfg.n_layers, "dtype": cfg.compute_dtype,
            "params": flops_lib.param_counts(cfg).total, "batch": batch, "seq": seq,
            "compile_s": round(compile_s, 2), "step_s": round(step_s, 4),
            "tokens_per_s": round(batch * seq / step_s), "mfu": round(flops_step / step_s / peak, 3)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="256,512,1024")
    parser.add_argument("--dtypes", default="float32,bfloat16")
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--seq", type=int, default=256)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--vocab", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--json", help="also write the rows to this file")
    parser.add_argument("--peak-flops", type=float,
                        help="datasheet dense peak FLOP/s for a second MFU column (e.g. 989e12 for an H100 in bf16)")
    args = parser.parse_args(argv)
    mesh = make_mesh(MeshConfig(data=1), jax.devices()[:1])
    peak = flops_lib.measure_matmul_peak()
    bf16_peak = flops_lib.measure_matmul_peak(dtype=jax.numpy.bfloat16)
    print(f"# {platform.processor() or platform.machine()} {jax.devices()[0].device_kind}, "
          f"jax {jax.__version__}; matmul rate measured here: float32 {peak / 1e9:.1f} GFLOP/s, "
          f"bfloat16 {bf16_peak / 1e9:.1f} GFLOP/s; MFU below is against the float32 rate")
    rows = []
    for d in (int(s) for s in args.sizes.split(",")):
        for dtype in args.dtypes.split(","):
            cfg = ModelConfig(vocab_size=args.vocab, d_model=d, n_layers=args.layers, n_heads=max(d // 64, 1),
                              max_seq_len=args.seq, d_ff=4 * d, compute_dtype=dtype)
            row = bench_model(cfg, args.batch, args.seq, args.steps, peak, mesh)
            if args.peak_flops:
                row["mfu_vs_datasheet"] = round(row["mfu"] * peak / args.peak_flops, 3)
            rows.append(row)
            print(json.dumps(row), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"peak_flops_f32": peak, "peak_flops_bf16": bf16_peak, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
