"""What `lm-sweep plan` shows: the plan as a table (one row per run, the dropped points) and how
long it will take: a short real training run of some shapes (`probe`), turned into a wall-time
estimate per run (`estimate_seconds`) and over a number of workers (`makespan`)."""

from __future__ import annotations

import dataclasses
import math
import os
import tempfile
from typing import Iterable

from experiments.plan import KINDS, Plan
from experiments.shapes import Shape


def _fmt(x: float) -> str:
    """3 significant digits: 512, 6.19e3, 1.2e11."""
    if abs(x) < 1000:
        return f"{x:.3g}"
    mantissa, exponent = f"{x:.2e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


def format_plan(plan: Plan, seconds: dict[str, float] | None = None) -> str:
    """The plan as a table: one row per run, then the dropped points with their reasons."""
    seconds = seconds or {}
    cfg = plan.config
    head = ["run", "kind", "C budget", "shape", "N", "N non-emb", "D", "D/N", "steps", "C actual"]
    tuned = any(r.learning_rate is not None or r.parametrization is not None for r in plan.runs)
    if tuned:
        head += ["lr", "param"]
    if seconds:
        head.append("est. s")
    rows = []
    for r in sorted(plan.runs, key=lambda r: (KINDS.index(r.kind), r.budget or 0, r.params)):
        row = [r.run_id, r.kind, _fmt(r.budget) if r.budget else "-", r.shape.name, _fmt(r.params),
               _fmt(r.params_nonembed), _fmt(r.tokens), f"{r.tokens / r.params_nonembed:.1f}",
               str(r.steps) if not r.branch_step else f"{r.branch_step}+{r.new_steps}", _fmt(r.compute)]
        if tuned:
            row += [f"{r.learning_rate or cfg.train.optim.learning_rate:g}", r.parametrization or cfg.train.model.parametrization]
        if seconds:
            row.append(f"{seconds.get(r.run_id, float('nan')):.0f}")
        rows.append(row)
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(head)]
    t = cfg.transfer
    what = (f"learning-rate transfer, {len(t.width_mults)} widths x {'/'.join(str(len(t.grid(p))) for p in t.parametrizations)} "
            f"rates x {len(t.parametrizations)} parametrisations" if t else f"{len(cfg.budgets)} budgets")
    if cfg.encdec is not None:
        e = cfg.encdec
        what = (f"encoder-decoder grid, encoder depths {list(e.encoder_layers)} x decoder depths "
                f"{list(e.decoder_layers)} x widths {list(e.widths)}, {e.steps} steps each")
    lines = [f"Sweep {cfg.name!r}: {what}, {len(plan.runs)} runs, C in training FLOPs "
             f"({cfg.convention!r}), N = parameters, D = tokens, batch {cfg.train.batch_size} x {cfg.train.data.seq_len}",
             "  ".join(h.ljust(w) for h, w in zip(head, widths)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in rows]
    if plan.dropped:
        lines.append("")
        lines.append(f"Dropped ({len(plan.dropped)}):")
        lines += [f"  C={d.budget:.3g} {d.shape} (N non-emb {d.params_nonembed}): {d.reason}" for d in plan.dropped]
    if seconds:
        total = sum(seconds.values())
        lines.append("")
        lines.append(f"Estimated: {total / 60:.1f} worker-minutes of training; about "
                     f"{makespan(seconds.values(), cfg.exec.workers) / 60:.1f} minutes on {cfg.exec.workers} "
                     f"worker(s), plus start-up and compilation")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# The wall-time estimate.

def probe_shapes(plan: Plan, k: int) -> list[Shape]:
    """The k shapes (of the plan's runs, ordered by size) a probe times: 1 -> the middle one, whose
    time the estimate scales to the others by FLOPs per token; 2 -> the smallest and the largest;
    3 or more -> those and the middle one (the estimate interpolates log-log). Each shape probed
    costs its compilations (~6 CPU-s cold for a tiny shape on a 2-core CPU): the default of 1 keeps
    `lm-sweep plan` under 10 s there (BENCHMARKS.md, "Small jobs")."""
    shapes = sorted({r.shape for r in plan.runs}, key=lambda s: min(r.params for r in plan.runs if r.shape == s))
    if k <= 0 or not shapes:
        return []
    n = len(shapes)
    picks = {1: [n // 2], 2: [0, n - 1]}.get(k, [0, n // 2, n - 1])
    return [shapes[i] for i in sorted(set(picks))]


def probe(plan: Plan, shapes: Iterable[Shape], steps: int = 60) -> dict[str, dict[str, float]]:
    """{shape name: {'step_s', 'compile_s'}} from a short real training run of each shape (of the
    plan's runs), run the way the sweep runs them (so their compilations land in the persistent cache
    too). step_s is the median over the logged intervals, so start-up effects of the first steps do
    not count."""
    import numpy as np

    from lm.io import read_jsonl
    from lm.train import train

    cfg = plan.config
    out = {}
    with tempfile.TemporaryDirectory(prefix="lm-probe-") as tmp:
        for shape in shapes:
            run = min((r for r in plan.runs if r.shape == shape), key=lambda r: r.parent is not None)
            spec = dataclasses.replace(run, run_id="probe", kind="cosine", steps=steps, parent=None,
                                       branch_step=None, checkpoint_steps=())
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

