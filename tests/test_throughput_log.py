"""Logged throughput is measured over windows that hold only training steps (issue 24 item 1): the
first window starts when the first step has finished; evaluation and checkpoint time is left out,
as it is of the run's overall figure. On a steady run every logged MFU is in (0, 1] and every
logged tokens/s within 2x of the run's overall tokens/s."""

import dataclasses
import os

from lm.io import read_jsonl
from lm.train import train
from test_checkpoint_integrity import compile_once, tiny  # noqa: F401


def test_logged_throughput_agrees_with_the_runs_overall_figure(tmp_path):
    cfg = dataclasses.replace(tiny(tmp_path / "run"), steps=60, log_every=10, eval_every=10, eval_batches=8,
                              checkpoint_every=20, peak_flops=None)
    result = train(cfg)
    rows = [r for r in read_jsonl(os.path.join(cfg.out_dir, "metrics.jsonl")) if "loss" in r]
    assert [r["step"] for r in rows] == [10, 20, 30, 40, 50, 60]
    overall = result["tokens_per_s"]
    for row in rows:
        assert 0 < row["mfu"] <= 1, row
        assert overall / 2 <= row["tokens_per_s"] <= 2 * overall, (row, overall)
