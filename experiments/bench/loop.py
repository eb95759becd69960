"""Sweep-loop benchmark: does `lm.train`'s loop run as fast as the bare jitted step?

For the default sweep's smallest and largest shapes (experiments/configs/default.py), builds the
run as the sweep would (its TrainConfig: host-fed schedule, logging every 10 steps, no progress
bar, no TensorBoard; `lm.train`'s own stages) and times only its loop stage for `--steps` steps
(steps, next blocks of batches, logging; its final evaluation and checkpoint taken out). Then
times the bare compiled step on one device-resident block of batches and learning rates (the
run's step: it picks its slot of the block, lm.step), same shape, optimizer and learning rates,
same number of steps. Both in one process pinned to one core (as a sweep worker is: the loop's Python and XLA's
work share it), alternating `--repeats` times; the best of each is kept (`ratio_*`), and the median
over rounds of each round's loop/bare ratio (`ratio_*_paired_median`: a round's two timings are
seconds apart, so the VM's drift over minutes cancels). Two clocks: wall time,
and this process's CPU time (all threads), which other processes' load on a shared machine
disturbs much less: the CPU ratio is the figure to quote on a busy machine.

    python -m experiments.bench.loop                 # as `make sweep` runs it: one XLA thread, one core
    python -m experiments.bench.loop --steps 2000 --repeats 5 --json loop.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import tempfile
import time

if __name__ == "__main__":             # what a sweep worker runs with: one XLA thread, pinned flags
    if "XLA_FLAGS" not in os.environ:
        os.environ["XLA_FLAGS"] = "--xla_cpu_multi_thread_eigen=false"
    from lm import xla_env
    xla_env.apply()

import jax
import numpy as np

from experiments import configs as configs_lib
from experiments.plan import make_plan


def sweep_extremes(config: str = "default", middle: bool = False) -> list:
    """The RunSpecs of the sweep's smallest and largest model (by non-embedding parameters), and
    with `middle` one of the median size between them."""
    plan = make_plan(configs_lib.load(config))
    runs = sorted(plan.runs, key=lambda r: r.params_nonembed)
    return [runs[0], runs[len(runs) // 2], runs[-1]] if middle else [runs[0], runs[-1]]


def _clocks() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def _rates(steps: int, t0: tuple[float, float], t1: tuple[float, float], excluded_s: float = 0.0) -> tuple[float, float]:
    """(steps per wall second, steps per CPU second of this process) between two `_clocks()`."""
    return steps / (t1[0] - t0[0] - excluded_s), steps / (t1[1] - t0[1] - excluded_s)


def loop_rate(train_cfg, steps: int, out_dir: str) -> tuple[float, float]:
    """(steps/s, steps per CPU second) of `lm.train`'s loop stage over `steps` steps: the run is
    built and its step compiled as `lm.train.train` does, then only the loop is timed (its final
    evaluation and checkpoint taken out)."""
    from lm import train as train_lib

    cfg = dataclasses.replace(train_cfg, steps=steps, eval_every=0, eval_batches=1, checkpoint_every=0,
                              checkpoint_steps=(), init_from=None, out_dir=out_dir)
    run = train_lib._build(cfg)
    state, _ = train_lib._initial_state(run, restart=False)
    eval_batches, _ = train_lib._held_out(run)
    step_fn, first, _ = train_lib._compile_step(run, state)
    loop = train_lib._Loop(run, eval_batches, start=0)
    t0 = _clocks()
    state = loop.train(state, step_fn, first)
    jax.block_until_ready(state)
    t1 = _clocks()
    run.ckpts.close()
    loop.writer.close()
    return _rates(steps, t0, t1, loop.timers["eval_s"] + loop.timers["checkpoint_s"])


def bare_rate(train_cfg, steps: int) -> tuple[float, float]:
    """(steps/s, steps per CPU second) of the compiled train step alone, called back to back on one
    device-resident block of batches and learning rates (the same step, model, optimizer, block
    size and host-fed learning rates as the run: lm.step's block-fed step)."""
    from lm import train as train_lib
    from lm.data.pipeline import to_device
    from lm.sharding import replicated

    cfg = dataclasses.replace(train_cfg, steps=steps)
    block = train_lib.block_size(cfg.batch_size, cfg.data.seq_len)
    compiled = train_lib._steps_for(cfg.model, cfg.optim, cfg.mesh, cfg.data.seq_len,
                                    None if cfg.schedule_on_host else cfg.steps, block)
    table = train_lib._lr_table(cfg)
    state = compiled.init(jax.random.PRNGKey(0))
    tokens = np.random.default_rng(0).integers(0, cfg.model.vocab_size, (block, cfg.batch_size, cfg.data.seq_len + 1))
    inputs = (to_device(tokens.astype(np.int32), compiled.block_sharding),)
    if table is not None:
        inputs += (to_device(table[:block].copy(), replicated(compiled.mesh)),)
    step = compiled.train_step.lower(state, *inputs).compile()
    state, metrics = step(state, *inputs)
    jax.block_until_ready(metrics)
    t0 = _clocks()
    for _ in range(steps):
        state, metrics = step(state, *inputs)
    jax.block_until_ready((state, metrics))
    return _rates(steps, t0, _clocks())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="default", help="sweep config whose extreme shapes are timed")
    parser.add_argument("--steps", type=int, default=1000,
                        help="steps per timing (the smallest shape's step is ~1 ms: 300 steps are too few on a noisy VM)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--core", type=int, default=0, help="pin this process to this core (-1: no pinning)")
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args(argv)
    if args.core >= 0 and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.core})
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
            row = {"run": spec.run_id, "d_model": m.d_model, "n_layers": m.n_layers,
                   "params_nonembed": spec.params_nonembed, "batch": train_cfg.batch_size,
                   "seq": train_cfg.data.seq_len, "steps": args.steps}
            for clock, i in (("wall", 0), ("cpu", 1)):
                best_loop, best_bare = max(x[i] for x in loop), max(x[i] for x in bare)
                paired = sorted(lo[i] / ba[i] for lo, ba in zip(loop, bare))   # each round's loop vs its own bare
                row.update({f"loop_steps_per_{clock}_s": round(best_loop, 1), f"bare_steps_per_{clock}_s": round(best_bare, 1),
                            f"ratio_{clock}": round(best_loop / best_bare, 3),
                            f"ratio_{clock}_paired_median": round(paired[len(paired) // 2], 3)})
            rows.append(row)
            print(json.dumps(row), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
