"""Sweep-loop benchmark: does `lm.train`'s loop run as fast as the bare jitted step?

For the default sweep's smallest and largest shapes (experiments/configs/default.py), trains the
run as the sweep would (its TrainConfig: host-fed schedule, logging every 10 steps, no progress
bar, no TensorBoard) for `--steps` steps and reads the loop's steps/s from result.json (time in
training steps, data and logging; evaluation and checkpoints excluded). Then times the bare jitted
step on one device-resident batch, same shape and optimizer, same number of steps. Both in one
process on the same threads, alternating `--repeats` times; the best of each is kept.

    python -m experiments.bench_loop                 # as `make sweep` runs it: one XLA thread
    python -m experiments.bench_loop --steps 400 --repeats 3 --json loop.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import tempfile
import time

if __name__ == "__main__" and "XLA_FLAGS" not in os.environ:   # what a sweep worker runs with
    os.environ["XLA_FLAGS"] = "--xla_cpu_multi_thread_eigen=false"

import jax
import numpy as np

from experiments import configs as configs_lib
from experiments.plan import make_plan


def sweep_extremes(config: str = "default") -> list:
    """The RunSpecs of the sweep's smallest and largest model (by non-embedding parameters)."""
    plan = make_plan(configs_lib.load(config))
    runs = sorted(plan.runs, key=lambda r: r.params_nonembed)
    return [runs[0], runs[-1]]


def loop_rate(train_cfg, steps: int, out_dir: str) -> float:
    """Steps/s of `lm.train.train`'s loop (training time only) over `steps` steps."""
    from lm.train import train

    cfg = dataclasses.replace(train_cfg, steps=steps, eval_every=0, eval_batches=1, checkpoint_every=0,
                              checkpoint_steps=(), init_from=None, out_dir=out_dir)
    result = train(cfg)
    return result["steps"] / result["train_s"]


def bare_rate(train_cfg, steps: int) -> float:
    """Steps/s of the jitted train step alone, called back to back on one device batch."""
    from lm.sharding import make_mesh
    from lm.step import compile_steps
    from lm.train import _lr_args, _optimizer

    cfg = dataclasses.replace(train_cfg, steps=steps)
    tx, table = _optimizer(cfg)
    compiled = compile_steps(cfg.model, tx, make_mesh(cfg.mesh), host_lr=table is not None)
    state = compiled.init(jax.random.PRNGKey(0))
    tokens = np.random.default_rng(0).integers(0, cfg.model.vocab_size, (cfg.batch_size, cfg.data.seq_len + 1))
    batch = jax.device_put(tokens.astype(np.int32), compiled.batch_sharding)
    step = compiled.train_step.lower(state, batch, *_lr_args(table, 0)).compile()
    state, metrics = step(state, batch, *_lr_args(table, 0))
    jax.block_until_ready(metrics)
    t0 = time.perf_counter()
    for i in range(steps):
        state, metrics = step(state, batch, *_lr_args(table, i))
    jax.block_until_ready((state, metrics))
    return steps / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="default", help="sweep config whose extreme shapes are timed")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args(argv)
    if args.steps < 20 or args.repeats < 1:
        raise SystemExit("bench_loop: --steps must be >= 20 and --repeats >= 1")
    sweep = configs_lib.load(args.config)
    print(f"# jax {jax.__version__}, {jax.devices()[0].device_kind}, XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for spec in sweep_extremes(args.config):
            train_cfg = spec.train_config(sweep, tmp)
            loop, bare = [], []
            for r in range(args.repeats):
                loop.append(loop_rate(train_cfg, args.steps, os.path.join(tmp, f"{spec.run_id}-{r}")))
                bare.append(bare_rate(train_cfg, args.steps))
            m = train_cfg.model
            row = {"run": spec.run_id, "d_model": m.d_model, "n_layers": m.n_layers, "params_nonembed": spec.params_nonembed,
                   "batch": train_cfg.batch_size, "seq": train_cfg.data.seq_len, "steps": args.steps,
                   "loop_steps_per_s": round(max(loop), 1), "bare_steps_per_s": round(max(bare), 1),
                   "ratio": round(max(loop) / max(bare), 3)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
