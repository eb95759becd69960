"""Helpers for tests that launch lm-train as real processes: one process with N simulated CPU
devices, or several joined by jax.distributed on 127.0.0.1 (gloo collectives)."""

import json
import os
import shutil
import socket
import subprocess
import sys

from lm.io import read_jsonl

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECORDER = os.path.join(ROOT, "tests", "record_batches.py")
TINY = ["model.vocab_size=64", "model.d_model=32", "model.n_layers=2", "model.n_heads=2",
        "model.max_seq_len=32", "model.d_ff=64", "model.compute_dtype=\"float32\"", "data.seq_len=32",
        "batch_size=8", "log_every=1", "eval_batches=1", "peak_flops=1e11", "progress=false",
        "tensorboard=false", "optim.warmup_steps=1"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env() -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    out.update(PYTHONPATH=ROOT, JAX_PLATFORMS="cpu")
    return out


def launch(out_dirs, args, *, devices: int, hashes=None, timeout: int = 300) -> list[tuple[int, str]]:
    """Train with one process per entry of `out_dirs` (its view of the run folder; normally all the
    same), `devices` CPU devices each; returns each process's (exit code, stderr). `hashes`: a file
    that receives the global batch hashes (tests/record_batches.py)."""
    entry = [RECORDER, str(hashes)] if hashes else ["-m", "lm.train"]
    n = len(out_dirs)
    dist = ["--coordinator", f"127.0.0.1:{free_port()}", "--num-processes", str(n)] if n > 1 else []
    procs = [subprocess.Popen([sys.executable, *entry, *dist, *(["--process-id", str(i)] if dist else []),
                               "--local-cpu-devices", str(devices), *TINY, *args, f'out_dir="{out_dir}"'],
                              env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i, out_dir in enumerate(out_dirs)]
    try:
        outs = [p.communicate(timeout=timeout) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    return [(p.returncode, err) for p, (_, err) in zip(procs, outs)]


def run(out_dir, args, *, devices: int, processes: int = 1, hashes=None, timeout: int = 300) -> None:
    """Train into `out_dir` with `processes` processes of `devices` CPU devices each; all must succeed."""
    for code, err in launch([out_dir] * processes, args, devices=devices, hashes=hashes, timeout=timeout):
        assert code == 0, err[-3000:]


def losses(out_dir) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in read_jsonl(os.path.join(out_dir, "metrics.jsonl")) if "loss" in r}


def hashes(path) -> dict[int, str]:
    return {r["step"]: r["sha256"] for r in read_jsonl(str(path))}


def result(out_dir) -> dict:
    with open(os.path.join(out_dir, "result.json")) as f:
        return json.load(f)


def crashed_copy(src, dst, keep_step: int) -> None:
    """`dst` = `src` as a crash right after its `keep_step` checkpoint leaves it: later checkpoints
    and result.json gone (metrics rows after the checkpoint stay: the resume rewinds them)."""
    shutil.copytree(src, dst)
    folder = os.path.join(dst, "checkpoints")
    for name in os.listdir(folder):
        if name.isdigit() and int(name) > keep_step:
            shutil.rmtree(os.path.join(folder, name))
    os.remove(os.path.join(dst, "result.json"))
