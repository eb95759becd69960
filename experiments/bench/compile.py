"""Compile time of a sweep shape's three programs (init, train step, eval step) under XLA option sets.

The sweep pays these once per shape (then its compilation cache serves them), so on a CPU they are
most of a sweep's time outside training steps. Each option set is compiled in a fresh process (XLA
keeps compiled programs in memory), for the default sweep's smallest, middle and largest shapes;
`--repeats` processes per set, best of them. Sets: 'xla' (XLA's defaults: -O3, YNNPACK fusions),
'O2' (-O2), 'O2-noynn' (-O2 without YNNPACK fusions), 'project' (lm.xla_env.CPU_COMPILE_OPTIONS,
per program).

    python -m experiments.bench.compile
    python -m experiments.bench.compile --sets xla,project --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

SETS = {"xla": {}, "O2": {"xla_backend_optimization_level": 2},
        "O2-noynn": {"xla_backend_optimization_level": 2, "xla_cpu_experimental_ynn_fusion_type": ""}}
PROGRAMS = ("init", "train_step", "eval_step")


def compile_times(config: str, option_set: str) -> list[dict]:
    """In this process: seconds to compile each program of the sweep's extreme and middle shapes."""
    import dataclasses
    import tempfile

    import jax
    import jax.numpy as jnp
    import numpy as np

    from experiments import configs as configs_lib
    from experiments.bench.loop import sweep_extremes
    from lm import train as train_lib
    from lm import xla_env

    jax.config.update("jax_enable_compilation_cache", False)
    sweep = configs_lib.load(config)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for spec in sweep_extremes(config, middle=True):
            cfg = spec.train_config(sweep, tmp)
            block = train_lib.block_size(cfg.batch_size, cfg.data.seq_len)
            c = train_lib._steps_for(cfg.model, cfg.optim, cfg.mesh, cfg.data.seq_len, None, block)
            key = jax.random.PRNGKey(0)
            state = c.abstract_state
            batch = jnp.zeros((cfg.batch_size, cfg.data.seq_len + 1), jnp.int32)
            inputs = jnp.zeros((block, *batch.shape), jnp.int32), np.zeros(block, np.float32)
            lowered = {"init": c.init.lower(key), "train_step": c.train_step.lower(state, *inputs),
                       "eval_step": c.eval_step.lower(state.params, batch)}
            row = {"run": spec.run_id, "set": option_set}
            for program in PROGRAMS:
                options = (xla_env.CPU_COMPILE_OPTIONS[program] if option_set == "project"
                           else SETS[option_set]) or None
                t0 = time.perf_counter()
                lowered[program].compile(compiler_options=options)
                row[program] = round(time.perf_counter() - t0, 3)
            rows.append(dataclasses.asdict(spec.shape) | row)
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="default")
    parser.add_argument("--sets", default="xla,O2,O2-noynn,project")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(compile_times(args.config, args.child)))
        return
    best: dict[tuple[str, str], dict] = {}
    env = dict(os.environ, LM_NO_PINNED_XLA_FLAGS="1")   # the sets say every option themselves
    for _ in range(args.repeats):
        for option_set in args.sets.split(","):
            out = subprocess.run([sys.executable, "-m", "experiments.bench.compile", "--config", args.config,
                                  "--child", option_set], capture_output=True, text=True, env=env, check=True)
            for row in json.loads(out.stdout.strip().splitlines()[-1]):
                key = (row["run"], option_set)
                best[key] = {p: min(row[p], best.get(key, row)[p]) for p in PROGRAMS} | {"run": row["run"]}
    print(f"# compile seconds (best of {args.repeats} processes): init / train step / eval step")
    for (run, option_set), row in sorted(best.items()):
        print(f"#   {run:24s} {option_set:9s} " + " / ".join(f"{row[p]:.2f}" for p in PROGRAMS))


if __name__ == "__main__":
    main()
