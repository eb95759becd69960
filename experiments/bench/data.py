"""Data benchmarks: synthetic generation speed on one core, the floor's cost, and data time per batch
against the default model's step time.

    python -m experiments.bench.data            # all figures (about a minute on 2 cores)
    python -m experiments.bench.data --quick    # generation only

Prints one JSON object per figure. Generation is pinned to one core (sched_setaffinity).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import numpy as np


def best_of(fn, repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def emit(**row) -> None:
    print(json.dumps(row), flush=True)


def bench_generation() -> None:
    from lm.config import DataConfig
    from lm.data.pipeline import BatchStream, build_dataset

    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    ds = build_dataset(DataConfig(), "train")
    lang = ds.language
    for rows, length in [(4096, 1024), (1024, 129)]:
        lang.sample(0, 0, rows, length)
        dt = best_of(lambda: lang.sample(0, 0, rows, length, start=rows))
        emit(figure="synthetic generation, one core", block=f"{rows}x{length}",
             tokens_per_s=round(rows * length / dt), seconds=round(dt, 4))
    stream = BatchStream(ds, batch_size=32, seq_len=128, seed=0)
    stream.batch(0)
    dt = best_of(lambda: [stream.batch(s) for s in range(100)], 3) / 100
    emit(figure="synthetic BatchStream.batch, default batch 32x129, one core",
         ms_per_batch=round(dt * 1e3, 3), tokens_per_s=round(32 * 129 / dt))
    held_out = lang.sample(0, 1, 256, 129)
    dt = best_of(lambda: lang.floor_of(held_out), 2)
    emit(figure="entropy floor (forward algorithm), one core", tokens_per_s=round(held_out.size / dt),
         floor=round(lang.floor_of(held_out), 4), seconds_per_100k_tokens=round(dt * 1e5 / held_out.size, 3))
    emit(figure="language", **{k: (round(v, 4) if isinstance(v, float) else v)
                               for k, v in lang.describe(128).items()})
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))


def bench_step_vs_data(steps: int = 20) -> None:
    """Data time (batch + device transfer) as a fraction of the default model's train step."""
    import jax

    from lm.config import DataConfig, MeshConfig, ModelConfig, OptimConfig
    from lm.data.pipeline import BatchStream, build_dataset, to_device
    from lm.optim import make_optimizer
    from lm.sharding import make_mesh
    from lm.step import compile_steps

    model = ModelConfig()
    mesh = make_mesh(MeshConfig())
    compiled = compile_steps(model, make_optimizer(OptimConfig(), 1000), mesh)
    state = compiled.init(jax.random.PRNGKey(0))

    sources = {"synthetic": (DataConfig(), None)}
    tmp = tempfile.mkdtemp(prefix="bench_data_")
    rng = np.random.default_rng(0)
    syllables = ["ka", "lo", "mi", "ne", "su", "tor", "bre", "an", "is", "th", "qu", "ex", "ou", "st"]
    words = ["".join(rng.choice(syllables, rng.integers(1, 4))) for _ in range(3000)]
    for f in range(4):
        paras = [" ".join(rng.choice(words, rng.integers(20, 200))) for _ in range(300)]
        with open(os.path.join(tmp, f"part{f}.txt"), "w") as fh:
            fh.write("\n\n".join(paras))
    sources["text (local TFDS, BPE 256)"] = (DataConfig(source=f"text:{tmp}/*.txt", data_dir=tmp), 256)

    for label, (cfg, vocab) in sources.items():
        ds = build_dataset(cfg, "train", vocab_size_hint=vocab or model.vocab_size)
        stream = BatchStream(ds, 32, cfg.seq_len, seed=0)
        batch = to_device(stream.batch(0), compiled.batch_sharding)
        state, metrics = compiled.train_step(state, batch)          # compile
        jax.block_until_ready(metrics)

        def data_only():
            for s in range(steps):
                jax.block_until_ready(to_device(stream.batch(s), compiled.batch_sharding))

        def step_only():
            nonlocal state
            for _ in range(steps):
                state, m = compiled.train_step(state, batch)
            jax.block_until_ready(m)

        data = best_of(data_only, 3) / steps
        step = best_of(step_only, 3) / steps
        emit(figure="data time vs step time", source=label, model="ModelConfig() default",
             batch="32x128", devices=len(jax.devices()), data_ms=round(data * 1e3, 3),
             step_ms=round(step * 1e3, 2), data_fraction_of_step=round(data / step, 4))


class _Rows:
    """A random-access source of single rows [seq+1] for grain (what its MapDataset reads)."""

    def __init__(self, dataset, length: int, seed: int, n: int):
        self.dataset, self.length, self.seed, self.n = dataset, length, seed, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> np.ndarray:
        return self.dataset.rows(np.array([i]), self.length, self.seed)[0]


def bench_grain(batches: int = 100) -> None:
    """The same batches through grain's MapDataset (index-based, checkpointable) and through
    BatchStream (index arithmetic on the whole batch): equal values, time per batch of each."""
    try:
        import grain
    except ImportError:
        return emit(figure="grain comparison skipped", reason="grain is not installed: "
                    ".venv/bin/pip install -c constraints.txt -e '.[grain]' to reproduce it")

    from lm.config import DataConfig
    from lm.data.pipeline import BatchStream, build_dataset

    ds = build_dataset(DataConfig(), "train")
    stream = BatchStream(ds, 32, 128, seed=0)
    source = _Rows(ds, 129, 0, 32 * batches)
    loader = grain.MapDataset.source(source).batch(32)
    for s in (0, batches - 1):
        np.testing.assert_array_equal(np.asarray(loader[s]), stream.batch(s))
    ours = best_of(lambda: [stream.batch(s) for s in range(batches)], 3) / batches
    theirs = best_of(lambda: [loader[s] for s in range(batches)], 3) / batches
    emit(figure="grain MapDataset vs BatchStream, synthetic 32x129 batches (same values)",
         batchstream_ms=round(ours * 1e3, 3), grain_ms=round(theirs * 1e3, 3),
         grain_over_batchstream=round(theirs / ours, 2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="generation figures only")
    parser.add_argument("--grain", action="store_true", help="only the grain comparison")
    args = parser.parse_args()
    if args.grain:
        return bench_grain()
    bench_generation()
    if not args.quick:
        bench_step_vs_data()
        bench_grain()


if __name__ == "__main__":
    main()
