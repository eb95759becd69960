"""The training loop compiles every function once: runs of 3 and 24 steps of the same shape, each in
a fresh process, trigger the same XLA compilations, and the train and eval steps compile once each
(so nothing recompiles after the first steps: no weak types, shape or sharding changes)."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCRIPT = r"""
import json, sys
from jax._src import dispatch, monitoring
from lm.config import DataConfig, ModelConfig, OptimConfig, TrainConfig
from lm.train import train

events = []
monitoring.register_event_duration_secs_listener(
    lambda event, duration, **kw: events.append(kw.get("fun_name", "?"))
    if event == dispatch.BACKEND_COMPILE_EVENT else None)
cfg = TrainConfig(
    model=ModelConfig(vocab_size=64, d_model=32, n_layers=2, n_heads=2, max_seq_len=32, d_ff=64,
                      compute_dtype="float32"),
    data=DataConfig(seq_len=32), optim=OptimConfig(learning_rate=1e-2, warmup_steps=1),
    steps=int(sys.argv[1]), batch_size=8, eval_every=1, eval_batches=1, log_every=1,
    checkpoint_every=2, out_dir=sys.argv[2], schedule_on_host=sys.argv[3] == '1', peak_flops=1e11, progress=False, tensorboard=False)
result = train(cfg)
print("EVENTS " + json.dumps({"status": result["status"], "events": events}))
"""


def _compiles(steps: int, out_dir, on_host: bool) -> dict:
    env = {**os.environ, "PYTHONPATH": ROOT}
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(steps), str(out_dir), str(int(on_host))], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("EVENTS ")][-1]
    return json.loads(line[len("EVENTS "):])


@pytest.mark.slow
@pytest.mark.parametrize("on_host", [False, True], ids=["schedule_in_step", "schedule_on_host"])
def test_no_compilation_after_the_first_steps(tmp_path, on_host):
    short, long = _compiles(3, tmp_path / "short", on_host), _compiles(24, tmp_path / "long", on_host)
    assert short["status"] == long["status"] == "completed"
    assert long["events"].count("jit(step)") == 2, long["events"]       # train step + eval step
    assert sorted(long["events"]) == sorted(short["events"]), (
        f"24 steps compiled {len(long['events'])} functions, 3 steps {len(short['events'])}")
