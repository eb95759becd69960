"""The project's train step against a PyTorch eager loop of the same model, alternating in one run.

PyTorch lives in a venv of this benchmark's own (`--torch-venv`, made on first use with `pip install
<--torch-spec>`; never a dependency of the project) and runs in a child process
(experiments/bench/_torch_worker.py) that this process drives step by step, so the two sides
alternate: per round and size, lm f32, torch f32, lm bf16, torch bf16, each `--steps` steps; a
shared machine's load moves both alike. Per round the figures are lm/torch tokens/s with the best
dtype of each, and float32 vs float32; the medians over rounds are printed with `uptime` load.

Presets: `model` (issue 27's comparison: vocab 1024, 4 layers, seq 256, batch 16, GELU MLP 4d,
RMSNorm, learned positions, untied head, heads of 64, AdamW, all cores) and `sweep` (the default
sweep's models: vocab 64, 2 layers, heads of 8, SwiGLU, RoPE, muP base 4, batch 8 x 64, one thread,
both processes pinned to one core as a sweep worker is).

    python -m experiments.bench.torch_compare --torch-spec 'torch==2.13.0+cpu'     # d256, d512
    python -m experiments.bench.torch_compare --preset sweep --sizes 8,24,48,80 --steps 50
    python -m experiments.bench.torch_compare --threads 1 --clock cpu     # on a busy machine

`--clock cpu` times each side by its process's CPU seconds instead of the wall clock: with one thread
each (`--threads 1`, both pinned to one core) that is the work a step costs, which other jobs on a
shared machine change far less than they change the wall time (no spinning thread pools to count).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

PRESETS = {
    "model": dict(sizes="256,512", layers=4, seq=256, batch=16, vocab=1024, head_dim=64, activation="gelu",
                  positions="learned", mup=0, threads=0, steps=3),
    "sweep": dict(sizes="8,24,48,80", layers=2, seq=64, batch=8, vocab=64, head_dim=8, activation="swiglu",
                  positions="rope", mup=4, threads=1, steps=50),
}
WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_torch_worker.py")


def torch_python(venv: str, spec: str) -> str:
    """The python of the benchmark's torch venv at `venv`, made (python -m venv; pip install spec)
    when it has no torch yet."""
    python = os.path.join(venv, "bin", "python")
    if os.path.exists(python) and subprocess.run([python, "-c", "import torch"], capture_output=True).returncode == 0:
        return python
    print(f"# making the torch venv {venv} (pip install {spec})", flush=True)
    subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    subprocess.run([python, "-m", "pip", "install", "-q", spec, "numpy"], check=True)
    size = subprocess.run(["du", "-sh", venv], capture_output=True, text=True).stdout.split()[0]
    print(f"# torch venv ready: {size}", flush=True)
    return python


def model_spec(args: argparse.Namespace, d: int, dtype: str) -> dict:
    """The model both sides build (the torch worker's dict; lm's ModelConfig fields follow it)."""
    heads = max(d // args.head_dim, 1)
    head_dim = d // heads
    m = d / args.mup if args.mup else 1.0
    return {"vocab_size": args.vocab, "d_model": d, "n_layers": args.layers, "n_heads": heads,
            "head_dim": head_dim, "d_ff": 4 * d if args.activation == "gelu" else max(8, round(8 * d / 3 / 8) * 8),
            "activation": args.activation, "positions": args.positions, "dtype": dtype,
            "attn_scale": 1 / head_dim if args.mup else head_dim ** -0.5, "logit_mult": 1 / m}


class TorchSide:
    """The child process running the PyTorch loop."""

    def __init__(self, python: str, threads: int):
        self.proc = subprocess.Popen([python, WORKER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.info = self.ask({"cmd": "threads", "n": threads or os.cpu_count() or 1})

    def ask(self, cmd: dict) -> dict:
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the torch worker stopped (exit {self.proc.wait()}) on {cmd['cmd']}")
        return json.loads(line)

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()


def lm_step(spec: dict, args: argparse.Namespace):
    """A function running `n` compiled lm train steps of `spec`, returning seconds per step."""
    import jax
    import numpy as np
    import optax
    from lm.config import MeshConfig, ModelConfig
    from lm.sharding import make_mesh
    from lm.step import compile_steps
    cfg = ModelConfig(vocab_size=spec["vocab_size"], d_model=spec["d_model"], n_layers=spec["n_layers"],
                      n_heads=spec["n_heads"], head_dim=spec["head_dim"], d_ff=spec["d_ff"],
                      max_seq_len=args.seq, positions=spec["positions"], activation=spec["activation"],
                      compute_dtype=spec["dtype"], **({"parametrization": "mup", "mup_base_width": args.mup}
                                                      if args.mup else {}))
    c = compile_steps(cfg, optax.adamw(1e-3), make_mesh(MeshConfig(data=1), jax.devices()[:1]))
    state = c.init(jax.random.PRNGKey(0))
    tokens = np.random.default_rng(0).integers(0, args.vocab, (args.batch, args.seq + 1)).astype(np.int32)
    batch = jax.device_put(tokens, c.batch_sharding)
    step = c.train_step.lower(state, batch).compile()
    box = [step(state, batch)[0]]
    jax.block_until_ready(box[0])

    clock = time.process_time if args.clock == "cpu" else time.perf_counter

    def run(n: int) -> float:
        t0 = clock()
        for _ in range(n):
            box[0], metrics = step(box[0], batch)
        jax.block_until_ready(metrics)
        return (clock() - t0) / n

    return run


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="model")
    parser.add_argument("--sizes", help="d_model values (default: the preset's)")
    parser.add_argument("--dtypes", default="float32,bfloat16")
    parser.add_argument("--steps", type=int, help="steps per timing (default: the preset's)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, help="threads of each side (default: the preset's; 0 = all cores)")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="time steps by the wall clock or by the process's CPU seconds")
    parser.add_argument("--torch-venv", default="/tmp/lm-torch-venv")
    parser.add_argument("--torch-spec", default="torch", help="what pip installs into the torch venv")
    args = parser.parse_args(argv)
    for key, value in PRESETS[args.preset].items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    if args.threads == 1:
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false").strip()
        if hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(0, {0})             # the torch child inherits it
    torch = TorchSide(torch_python(args.torch_venv, args.torch_spec), args.threads)
    sizes, dtypes = [int(s) for s in args.sizes.split(",")], args.dtypes.split(",")
    lm_runs = {}
    for d in sizes:
        for dt in dtypes:
            spec = model_spec(args, d, dt)
            lm_runs[(d, dt)] = lm_step(spec, args)
            torch.ask({"cmd": "build", "key": f"{d}-{dt}", "model": spec, "batch": args.batch, "seq": args.seq})
    import jax
    print(json.dumps({"preset": args.preset, "clock": args.clock, "threads": args.threads, "jax": jax.__version__, **torch.info, "cpus": os.cpu_count(),
                      "affinity": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None}))
    tokens = args.batch * args.seq
    ratios = {d: {"best": [], "f32": []} for d in sizes}
    for r in range(args.rounds):
        for d in sizes:
            row = {"round": r, "d_model": d, "load": os.getloadavg()[0]}
            for dt in dtypes:
                row[f"lm_{dt}"] = round(tokens / lm_runs[(d, dt)](args.steps))
                row[f"torch_{dt}"] = round(tokens / torch.ask({"cmd": "time", "key": f"{d}-{dt}", "steps": args.steps,
                                                          "clock": args.clock})["s"])
            row["lm_over_torch_best"] = round(max(row[f"lm_{dt}"] for dt in dtypes) / max(row[f"torch_{dt}"] for dt in dtypes), 3)
            ratios[d]["best"].append(row["lm_over_torch_best"])
            if "float32" in dtypes:
                row["lm_over_torch_f32"] = round(row["lm_float32"] / row["torch_float32"], 3)
                ratios[d]["f32"].append(row["lm_over_torch_f32"])
            print(json.dumps(row), flush=True)
    torch.close()
    for d in sizes:
        print(f"# d{d}: lm/torch best dtype each, median of {args.rounds} rounds "
              f"{statistics.median(ratios[d]['best']):.3f} {ratios[d]['best']}" +
              (f"; float32 vs float32 {statistics.median(ratios[d]['f32']):.3f} {ratios[d]['f32']}" if ratios[d]["f32"] else ""))
    print(f"# load {os.getloadavg()}; torch venv {args.torch_venv} (spec {args.torch_spec})")


if __name__ == "__main__":
    main()
