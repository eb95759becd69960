"""How long a plan will take: a short real training run of some shapes (`probe`), turned into a
wall-time estimate per run (`estimate_seconds`) and over a number of workers (`makespan`)."""

from __future__ import annotations

import dataclasses
import math
import os
import tempfile
from typing import Iterable

from experiments.configs import SweepConfig
from experiments.plan import Plan, run_spec
from experiments.shapes import Shape


def probe(cfg: SweepConfig, shapes: Iterable[Shape], steps: int = 60) -> dict[str, dict[str, float]]:
    """{shape name: {'step_s', 'compile_s'}} from a short real training run of each shape, run the
    way the sweep runs them (so their compilations land in the persistent cache too). step_s is the
    median over the logged intervals, so start-up effects of the first steps do not count."""
    import numpy as np

    from lm.io import read_jsonl
    from lm.train import train

    out = {}
    with tempfile.TemporaryDirectory(prefix="lm-probe-") as tmp:
        for shape in shapes:
            spec = run_spec(cfg, "probe", "cosine", shape, None, steps)
            tc = dataclasses.replace(spec.train_config(cfg, tmp), out_dir=os.path.join(tmp, shape.name),
                                     eval_every=0, eval_batches=1, checkpoint_every=0, log_every=10,
                                     optim=dataclasses.replace(cfg.train.optim, warmup_steps=min(cfg.train.optim.warmup_steps, steps)))
            result = train(tc)
            rates = [r["tokens_per_s"] for r in read_jsonl(os.path.join(tc.out_dir, "metrics.jsonl"))
                     if "tokens_per_s" in r]
            rate = float(np.median(rates)) if rates else result["tokens_per_s"]
            out[shape.name] = {"step_s": cfg.tokens_per_step / rate, "compile_s": result["compile_s"]}
    return out


def estimate_seconds(plan: Plan, probed: dict[str, dict[str, float]]) -> dict[str, float]:
    """{run_id: seconds}: steps x seconds per step, interpolated (log-log in FLOPs per step) between
    the probed shapes, plus evaluation time."""
    if not probed:
        return {}
    cfg = plan.config
    points = []
    for spec in plan.runs:
        if spec.shape.name in probed:
            points.append((math.log(spec.flops_per_token), math.log(probed[spec.shape.name]["step_s"])))
    points = sorted(set(points))
    if len(points) >= 2:
        n = len(points)
        mx = sum(p[0] for p in points) / n
        my = sum(p[1] for p in points) / n
        sxx = sum((p[0] - mx) ** 2 for p in points)
        slope = sum((p[0] - mx) * (p[1] - my) for p in points) / sxx if sxx > 0 else 1.0
    else:
        mx, my, slope = points[0][0], points[0][1], 1.0
    out = {}
    for spec in plan.runs:
        if spec.shape.name in probed:
            step_s = probed[spec.shape.name]["step_s"]
        else:
            step_s = math.exp(my + slope * (math.log(spec.flops_per_token) - mx))
        evals = 0 if spec.kind == "wsd_cooldown" else cfg.evals_per_run
        out[spec.run_id] = step_s * (spec.new_steps + (evals + 1) * cfg.train.eval_batches / 3)
    return out


def makespan(seconds: Iterable[float], workers: int) -> float:
    """Wall time of longest-first scheduling of jobs over `workers` workers."""
    loads = [0.0] * max(workers, 1)
    for s in sorted(seconds, reverse=True):
        loads[loads.index(min(loads))] += s
    return max(loads)

