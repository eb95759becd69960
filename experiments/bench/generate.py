"""Decode benchmark: generated tokens/s with and without the key/value cache.

The model is the `lm-train` default (lm.train.default_config().model) with random weights (speed
does not depend on them); sampling is greedy with no stop token, so every row generates exactly
`new` tokens. Each setting is compiled once (timed separately), then run `--repeats` times; the
figure is the median. Tokens/s counts generated tokens (batch * new) over the whole call,
prefill included. Without the cache every step recomputes the whole fixed-size sequence
(bucketed prompt + new tokens), which is what the cache saves.

    python -m experiments.bench.generate
    python -m experiments.bench.generate --prompt 16 --new 32,64,112 --batch 1,8
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import time

import jax
import numpy as np

from lm.generate import SamplingConfig, generate
from lm.model import init_params
from lm.train import default_config


def bench(params, cfg, batch: int, prompt: int, new: int, use_cache: bool, repeats: int) -> dict:
    rng = np.random.default_rng(0)
    prompts = rng.integers(0, cfg.vocab_size, (batch, prompt)).tolist()
    sampling = SamplingConfig(max_new_tokens=new, temperature=0.0)
    t0 = time.perf_counter()
    generate(params, cfg, prompts, sampling, use_cache=use_cache)          # compile + first run
    first_s = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        generate(params, cfg, prompts, sampling, use_cache=use_cache)
        times.append(time.perf_counter() - t0)
    s = float(np.median(times))
    return {"cache": use_cache, "batch": batch, "prompt": prompt, "new": new,
            "first_call_s": round(first_s, 2), "s": round(s, 4), "tokens_per_s": round(batch * new / s, 1)}


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        return f"{names[0]} x{len(names)} threads" if names else platform.machine()
    except OSError:
        return platform.processor() or platform.machine()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompt", type=int, default=16, help="prompt tokens")
    parser.add_argument("--new", default="32,64,112", help="generated tokens (prompt + new <= max_seq_len)")
    parser.add_argument("--batch", default="1,8")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--model", default="{}", help="JSON overrides of the default ModelConfig")
    args = parser.parse_args(argv)
    cfg = dataclasses.replace(default_config().model, **json.loads(args.model))
    params = init_params(cfg, jax.random.key(0))
    print(f"# {cpu_name()}; jax device {jax.devices()[0].device_kind} x{jax.device_count()}, "
          f"jax {jax.__version__}; model d_model={cfg.d_model} n_layers={cfg.n_layers} n_heads={cfg.n_heads} "
          f"vocab={cfg.vocab_size} max_seq_len={cfg.max_seq_len}")
    print(f"{'batch':>5} {'prompt':>6} {'new':>4} {'cached tok/s':>13} {'uncached tok/s':>15} {'speed-up':>8}")
    for batch in map(int, args.batch.split(",")):
        for new in map(int, args.new.split(",")):
            rows = [bench(params, cfg, batch, args.prompt, new, c, args.repeats) for c in (True, False)]
            print(f"{batch:>5} {args.prompt:>6} {new:>4} {rows[0]['tokens_per_s']:>13.0f} "
                  f"{rows[1]['tokens_per_s']:>15.0f} {rows[0]['tokens_per_s'] / rows[1]['tokens_per_s']:>7.1f}x",
                  flush=True)
            for r in rows:
                print("#", json.dumps(r), flush=True)


if __name__ == "__main__":
    main()
