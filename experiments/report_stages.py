"""Report sections of the main job: the preregistered track record (with its plot), whether
Approaches 1-3 agree on a (and which budget drives a disagreement), and for a text corpus the tokens
per epoch, each run's epochs and the data-constrained law."""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from experiments import forecasts


def track_record_lines(folder: str, out: dict[str, Any]) -> list[str]:
    """The forecasts.jsonl track record, and plots/forecasts.png: predicted (interval) vs observed."""
    record = forecasts.track_record(folder)
    if not record:
        return []
    out["track_record"] = record
    lines = forecasts.format_track_record(record)
    try:
        lines.append(f"  plot: {plot_track_record(record, os.path.join(folder, 'plots'))}")
    except Exception as err:  # noqa: BLE001 - a plot never hides the numbers
        lines.append(f"  (plot failed: {type(err).__name__}: {err})")
    return lines


def plot_track_record(record: list[dict[str, Any]], folder: str) -> str:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(folder, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6, 4))
    c = np.array([r["budget"] for r in record])
    pred = np.array([r["loss"] for r in record])
    lo = np.array([np.nan if r["lo"] is None else r["lo"] for r in record])
    hi = np.array([np.nan if r["hi"] is None else r["hi"] for r in record])
    ax.errorbar(c, pred, yerr=[np.nan_to_num(pred - lo), np.nan_to_num(hi - pred)], fmt="o", capsize=3,
                label="preregistered forecast (90 %)")
    obs = [(r["budget"], r["observed_loss"]) for r in record if r["observed_loss"] is not None]
    if obs:
        ax.plot(*np.array(obs).T, "s", color="C3", label="observed parabola minimum")
    for r in record:
        ax.annotate(f"stage {r['stage']}", (r["budget"], r["loss"]), textcoords="offset points", xytext=(5, 5), fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("budget C (FLOPs)")
    ax.set_ylabel("optimal loss")
    ax.set_title("Forecasts written before each stage trained")
    ax.legend(fontsize=8)
    path = os.path.join(folder, "forecasts.png")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def agreement_lines(res, table, fpt, out: dict[str, Any]) -> list[str]:
    """Whether each approach's a lies inside every other approach's interval; where not, the budget
    whose removal moves Approach 2's a (refitted without it) furthest toward the others."""
    rows = [r for r in res.exponents_table().to_dict("records") if np.isfinite(r["a"])]
    if len(rows) < 2:
        return []
    pinned = [r["approach"] for r in rows if not (np.isfinite(r["a_lo"]) and np.isfinite(r["a_hi"]))]
    outside = [(p["approach"], q["approach"]) for p in rows for q in rows
               if p is not q and np.isfinite(q["a_lo"]) and not q["a_lo"] <= p["a"] <= q["a_hi"]]
    out["agreement"] = {"agree": not outside, "outside": outside, "no_interval": pinned}
    values = ", ".join(f"{r['approach']} {r['a']:.3f} [{r['a_lo']:.3f}, {r['a_hi']:.3f}]" for r in rows)
    if not outside:
        return [f"Approaches agree on a: each inside the others' intervals ({values})"]
    lines = [f"Approaches DISAGREE on a ({values}): " +
             "; ".join(f"{p}'s a outside {q}'s interval" for p, q in outside)]
    drivers = _budget_influence(table, fpt)
    if drivers:
        out["agreement"]["approach2_without_budget"] = drivers
        others = np.mean([r["a"] for r in rows if not r["approach"].startswith("Approach 2")] or [np.nan])
        lines.append("  Approach 2's a refitted without each budget: " +
                     ", ".join(f"-{c:.3g}: {a:.3f}" for c, a in drivers.items()))
        if np.isfinite(others):
            c_best = min(drivers, key=lambda c: abs(drivers[c] - others))
            lines.append(f"  the budget that drives the difference most: C={c_best:.3g} (without it Approach 2 gives "
                         f"a = {drivers[c_best]:.3f}, the others' mean {others:.3f})")
    return lines


def _budget_influence(table, fpt) -> dict[float, float]:
    import warnings

    from lm.scaling import approach2
    budgets = sorted(set(table["budget"]))
    if len(budgets) < 4:
        return {}
    out = {}
    for c in budgets:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fit = approach2(table[table["budget"] != c], flops_per_token=fpt, n_bootstrap=0, budgets=(c,))
            out[float(c)] = float(fit.estimates["a"].value)
        except Exception:  # noqa: BLE001 - a budget whose removal leaves nothing to fit is skipped
            continue
    return out


def corpus_lines(folder: str, frame, out: dict[str, Any]) -> list[str]:
    """Tokens per epoch, each run's epochs (repeats flagged) and, when some run saw >= 2 epochs, the
    data-constrained law (lm.scaling.datalimited) fitted on the runs."""
    path = os.path.join(folder, "corpus.json")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        corpus = json.load(f)
    per_epoch = float(corpus["tokens_per_epoch"])
    done = frame[(frame["status"] == "completed") & frame["loss"].notna()]
    epochs = done["D"].astype(float) / per_epoch
    out["corpus"] = corpus
    out["epochs"] = dict(zip(done["run_id"], epochs.round(3)))
    lines = [f"Corpus {corpus['source']} (sha256 {corpus['sha256'][:16]}..., {corpus['train_files']} train / "
             f"{corpus['validation_files']} held-out files, {corpus['train_bytes']} bytes): {per_epoch:.0f} tokens per "
             f"epoch, {corpus.get('validation_tokens', 0)} held-out tokens",
             f"  epochs per run: min {epochs.min():.2f}, max {epochs.max():.2f}; runs repeating data (> 1 epoch): "
             f"{int((epochs > 1).sum())} of {len(epochs)}"]
    for run_id, e in sorted(zip(done["run_id"], epochs), key=lambda t: -t[1]):
        if e > 1:
            lines.append(f"    REPEATS DATA: {run_id} saw {e:.2f} epochs")
    if (epochs >= 2).any():
        from lm.scaling import fit_data_constrained
        try:
            fit = fit_data_constrained(done["N"].astype(float), done["D"].astype(float),
                                       np.minimum(done["D"].astype(float), per_epoch), done["loss"].astype(float))
            lines.append("  " + fit.summary().replace("\n", "\n  "))
            out["data_constrained"] = {"R_D": fit.law.R_D, "R_N": fit.law.R_N}
        except Exception as err:  # noqa: BLE001
            lines.append(f"  data-constrained law: not fitted ({type(err).__name__}: {err})")
    return lines
