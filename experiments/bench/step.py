"""Training-step benchmark: compile time, step time, tokens/s and MFU for d_model 256, 512, 1024.

On CPU, MFU's denominator is the float32 matmul rate (2048^3 jitted jnp.dot) measured in the same
process, interleaved with the steps (a matmul before each timed step; the best of all of them),
so on a busy machine both figures see the same load; the figure says how close the step gets to
what this machine's matmuls can do. On GPU/TPU the denominator is the dense bf16 datasheet peak
of the device kind (lm.flops.PEAK_FLOPS_BF16) or --peak-flops. FLOPs per step use '6n_attn'
(what XLA executes: 6N + non-causal attention); --causal-half counts causal attention as half
('6n_attn_causal', what a causal flash kernel executes and MaxText reports).

    python -m experiments.bench.step                 # all sizes, float32 and bfloat16 compute
    python -m experiments.bench.step --sizes 512 --dtypes float32 --steps 10
    python -m experiments.bench.step --sizes 64,256,512 --dtypes auto,float32,bfloat16   # does the probe
        # behind compute_dtype='auto' (lm.precision) pick the dtype whose step is faster?
    python -m experiments.bench.step --sizes 768,1024 --layers 12,24 --seq 1024 --batch 16 \
        --dtypes bfloat16 --attention cudnn --vocab 50304     # GPU mode: 124M / 350M GPT shapes
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lm import flops as flops_lib
from lm.config import MeshConfig, ModelConfig
from lm.sharding import make_mesh
from lm.step import compile_steps


def matmul_timer(dtype) -> Callable[[], float]:
    """A function timing one 2048^3 product (seconds); the operands are made once."""
    a = jax.random.normal(jax.random.key(0), (2048, 2048), dtype)
    mm = jax.jit(jnp.dot)
    mm(a, a).block_until_ready()

    def timed() -> float:
        t0 = time.perf_counter()
        mm(a, a).block_until_ready()
        return time.perf_counter() - t0

    return timed


def bench_model(cfg: ModelConfig, batch: int, seq: int, steps: int, mesh, matmul, convention: str) -> dict:
    """Times `steps` train steps (median) with a matmul timing before each; returns the row and
    the fastest matmul seen (seconds)."""
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
    times, mm_best = [], float("inf")
    for _ in range(steps):
        mm_best = min(mm_best, matmul())
        t0 = time.perf_counter()
        state, m = step(state, data)
        jax.block_until_ready(m)
        times.append(time.perf_counter() - t0)
    step_s = float(np.median(times))
    flops_step = flops_lib.flops_per_token(cfg, seq, convention) * batch * seq
    row = {"d_model": cfg.d_model, "n_layers": cfg.n_layers, "dtype": cfg.compute_dtype,
           "attention": cfg.attention_impl, "params": flops_lib.param_counts(cfg).total, "batch": batch,
           "seq": seq, "compile_s": round(compile_s, 2), "step_s": round(step_s, 4),
           "best_step_s": round(min(times), 4), "tokens_per_s": round(batch * seq / step_s),
           "flops_per_step": flops_step}
    return row, mm_best


def _auto_choice(d: int, args: argparse.Namespace):
    """What compute_dtype='auto' becomes for this size and batch (lm.precision), printed with the
    probe's timings."""
    from lm import precision
    choice = precision.resolve("auto", tokens=args.batch * args.seq, d_model=d, d_ff=4 * d)
    print(json.dumps({"d_model": d, "auto": choice.record()}), flush=True)
    return choice


def _print_auto_summary(autos: dict, rows: list[dict]) -> None:
    """Per size: what 'auto' chose, and which dtype's step was faster when both were measured."""
    for d, choice in autos.items():
        speed = {r["dtype"]: r["tokens_per_s"] for r in rows if r["d_model"] == d}
        probe = choice.probe or {}
        line = (f"#   d{d} auto -> {choice.dtype} by {choice.by}" + (
            f" (probe {probe['rows']}x{d}x{probe['d_ff']}: float32 {probe['float32_s'] * 1e3:.1f} ms, "
            f"bfloat16 {probe['bfloat16_s'] * 1e3:.1f} ms)" if probe else ""))
        if {"float32", "bfloat16"} <= set(speed):
            faster = max(("float32", "bfloat16"), key=speed.get)
            line += (f"; faster step: {faster} ({speed['bfloat16'] / speed['float32']:.3f}x bf16/f32 tok/s)"
                     f" -> {'agrees' if faster == choice.dtype else 'DISAGREES'}")
        print(line)


def _print_summary(rows: list[dict], device, f32_rate: float, bf16_rate: float, convention: str) -> None:
    """The closing table; each row's fraction against the best f32 matmul of the whole run."""
    for row in rows:
        row["frac_of_best_f32_matmul"] = round(row["flops_per_step"] / row["step_s"] / f32_rate, 3)
    print(f"# {platform.processor() or platform.machine()} {device.device_kind}, jax {jax.__version__}, "
          f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}; matmul 2048^3: float32 {f32_rate / 1e9:.1f} (best of "
          f"the run), bfloat16 {bf16_rate / 1e9:.1f} GFLOP/s; FLOPs: {convention}")
    for row in rows:
        print(f"#   d{row['d_model']} L{row['n_layers']} {row['dtype']:9s} {row['tokens_per_s']:8d} tok/s  "
              f"{row['frac_of_best_f32_matmul']:.3f} of the f32 matmul rate" +
              (f"  MFU {row['mfu']:.3f}" if "mfu" in row else ""))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="256,512,1024")
    parser.add_argument("--layers", default="4", help="n_layers, one value or one per size")
    parser.add_argument("--dtypes", default="float32,bfloat16")
    parser.add_argument("--seq", type=int, default=256)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--vocab", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--attention", default="einsum", help="model.attention_impl: einsum, xla or cudnn")
    parser.add_argument("--causal-half", action="store_true", help="count causal attention FLOPs as half")
    parser.add_argument("--json", help="also write the rows to this file")
    parser.add_argument("--peak-flops", type=float,
                        help="peak FLOP/s of the device (default: CPU the matmul measured here; "
                             "GPU/TPU the dense bf16 datasheet figure of lm.flops.PEAK_FLOPS_BF16)")
    args = parser.parse_args(argv)
    from lm import xla_env
    xla_env.apply()                       # the pinned XLA flags, before the backend starts
    sizes = [int(s) for s in args.sizes.split(",")]
    layers = [int(n) for n in args.layers.split(",")]
    if len(layers) not in (1, len(sizes)):
        raise SystemExit(f"bench: --layers has {len(layers)} values for {len(sizes)} sizes; give one or one per size")
    layers = layers * len(sizes) if len(layers) == 1 else layers
    convention = "6n_attn_causal" if args.causal_half else "6n_attn"
    device = jax.devices()[0]
    mesh = make_mesh(MeshConfig(data=1), [device])
    matmul = matmul_timer(jnp.float32)
    bf16_rate = 2 * 2048**3 / min(matmul_timer(jnp.bfloat16)() for _ in range(3))
    on_cpu = device.platform == "cpu"
    datasheet = args.peak_flops or (None if on_cpu else flops_lib.datasheet_peak(device.device_kind))
    if not on_cpu and datasheet is None:
        print(f"# WARNING: {device.device_kind!r} has no datasheet peak in lm.flops.PEAK_FLOPS_BF16; "
              "pass --peak-flops for an MFU", flush=True)
    rows, autos, mm_best = [], {}, min(matmul() for _ in range(3))
    for d, n_layers in zip(sizes, layers):
        dtypes = args.dtypes.split(",")
        for dtype in dtypes:
            if dtype == "auto":           # bench what it resolves to, unless that is listed anyway
                autos[d] = _auto_choice(d, args)
                if (dtype := autos[d].dtype) in dtypes:
                    continue
            cfg = ModelConfig(vocab_size=args.vocab, d_model=d, n_layers=n_layers, n_heads=max(d // 64, 1),
                              max_seq_len=args.seq, d_ff=4 * d, compute_dtype=dtype, attention_impl=args.attention)
            row, best = bench_model(cfg, args.batch, args.seq, args.steps, mesh, matmul, convention)
            mm_best = min(mm_best, best)
            rows.append(row)
            rate = row["flops_per_step"] / row["step_s"]
            row["frac_of_f32_matmul"] = round(rate / (2 * 2048**3 / best), 3)
            if datasheet:
                row["mfu"] = round(rate / datasheet, 3)
            print(json.dumps({k: v for k, v in row.items() if k != "flops_per_step"}), flush=True)
    f32_rate = 2 * 2048**3 / mm_best
    _print_summary(rows, device, f32_rate, bf16_rate, convention)
    _print_auto_summary(autos, rows)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"peak_flops_f32": f32_rate, "peak_flops_bf16": bf16_rate, "datasheet_peak": datasheet,
                       "convention": convention, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
