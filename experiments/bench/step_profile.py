"""Where a training step's time goes: a `jax.profiler` trace of a few steps of the bench model,
read back with jaxlib's ProfileData, each XLA thunk's time per step joined to the op name of the
compiled HLO instruction it runs (the jax function it came from).

On CPU the thunks are XLA's fusions and library calls ('ynn_fusion' = dots with their neighbouring
elementwise work handed to YNNPACK, 'dot' = XLA's own dot, 'wrapped_broadcast' = filled buffers,
'*_fusion' = elementwise work); independent thunks run on different threads at once, so the times
add up to more than the step. Model as experiments.bench.

    python -m experiments.bench.step_profile --d-model 256
    python -m experiments.bench.step_profile --d-model 256 --set scan_unroll=1 --top 40
"""

from __future__ import annotations

import argparse
import collections
import glob
import re
import tempfile

import jax
import numpy as np
import optax

from lm.config import MeshConfig, ModelConfig
from lm.sharding import make_mesh
from lm.step import compile_steps


def op_names(hlo_text: str) -> dict[str, tuple[str, str]]:
    """{instruction name: (result shape, jax op name)} of a compiled HLO module's text."""
    names = {}
    for line in hlo_text.splitlines():
        m = re.match(r"\s*(?:ROOT )?%?([\w.\-]+) = (\S+) .*?op_name=\"([^\"]+)\"", line)
        if m:
            names[m.group(1)] = (m.group(2), m.group(3))
    return names


def thunk_times(trace_dir: str) -> collections.Counter:
    """{thunk name: summed nanoseconds} over the XLA worker threads of the trace in `trace_dir`."""
    from jax._src.lib import _profile_data

    path = glob.glob(f"{trace_dir}/**/*.xplane.pb", recursive=True)[0]
    totals: collections.Counter = collections.Counter()
    for plane in _profile_data.ProfileData.from_file(path).planes:
        for line in plane.lines:
            if "XLA" not in line.name:
                continue
            for event in line.events:
                if not event.name.startswith("ThunkExecutor"):
                    totals[event.name] += event.duration_ns
    return totals


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--d-model", type=int, default=256)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--set", action="append", default=[], help="ModelConfig override key=value")
    args = parser.parse_args(argv)
    overrides = {}
    for item in args.set:
        key, _, value = item.partition("=")
        overrides[key] = {"True": True, "False": False}.get(value, int(value) if value.isdigit() else value)
    d = args.d_model
    cfg = ModelConfig(vocab_size=1024, d_model=d, n_layers=4, n_heads=max(d // 64, 1), max_seq_len=256,
                      d_ff=4 * d, compute_dtype=args.dtype, **overrides)
    compiled = compile_steps(cfg, optax.adamw(1e-3), make_mesh(MeshConfig(data=1), jax.devices()[:1]))
    state = compiled.init(jax.random.PRNGKey(0))
    batch = jax.device_put(np.random.default_rng(0).integers(0, 1024, (16, 257)).astype(np.int32),
                           compiled.batch_sharding)
    step = compiled.train_step.lower(state, batch).compile()
    names = op_names(step.as_text())
    for _ in range(2):
        state, metrics = step(state, batch)
    jax.block_until_ready(metrics)
    with tempfile.TemporaryDirectory() as tmp:
        with jax.profiler.trace(tmp):
            for _ in range(args.steps):
                state, metrics = step(state, batch)
            jax.block_until_ready(metrics)
        totals = thunk_times(tmp)
    per_step = {k: v / args.steps / 1e6 for k, v in totals.items()}
    print(f"# d{d} L4 {args.dtype} {overrides or ''}: thunk ms per step (summed over threads) "
          f"{sum(per_step.values()):.1f}")
    for name, ms in sorted(per_step.items(), key=lambda kv: -kv[1])[:args.top]:
        shape, op = names.get(name, ("?", "?"))
        print(f"{ms:9.2f} ms  {name:34s} {shape[:34]:34s} {'/'.join(op.split('/')[-3:])[:70]}")


if __name__ == "__main__":
    main()
