"""The table `lm-sweep plan` shows: one row per run, the dropped points, the time estimate."""

from __future__ import annotations

from experiments.estimate import makespan
from experiments.plan import KINDS, Plan


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
