"""What a sweep folder records: its identity (sweep.json, plan.json) and its results table.

The identity: `sweep.json` holds the SweepConfig's identity (everything that changes the
numbers); a folder made by another config is refused, so results of different sweeps never mix.

The results table: `<sweep_dir>/results.jsonl`, one row per finished run.

Append-only and crash-safe: a row is one complete JSON line written with a single write and
fsync'd; only the sweep's orchestrator writes it. A crash can leave at most a torn last line,
which readers ignore and `repair` truncates before the next append. Rows are unique by run_id
(the orchestrator never appends a run twice; readers keep the first row of a run if ever there
were two). `load_results(dir) -> pandas.DataFrame` is what fits and notebooks read.

Columns of a row: identifiers (run_id, sweep, kind, schedule, budget, shape, d_model, n_layers,
n_encoder_layers (0: decoder-only), n_heads, d_ff), N (total parameters), N_nonembed, D (tokens trained), C (training FLOPs under the
sweep's convention, from the actual tokens) and C_<convention> for every lm.flops convention,
tokens_per_param (D / N_nonembed), loss (final eval loss), train_loss, eval_curve (every
evaluation: step, tokens, eval_loss), entropy_floor, status ('completed' or 'diverged'), message,
steps, attempts, wall_s / train_s / compile_s / eval_s / checkpoint_s (the final attempt), mfu,
tokens_per_s, parent / branch_step (WSD cooldowns), parametrization ('standard' or 'mup'),
learning_rate (peak), lr_hidden (peak rate of the hidden matrices: learning_rate / width_mult under
muP), width_mult, config (the full TrainConfig).
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

from experiments.configs import from_dict, with_train_template
from lm import flops as flops_lib
from lm.config import RESUME_CHANGES
from lm.config_fields import differences, with_field_defaults
from lm.io import append_json_line, atomic_write_text, read_jsonl, truncate_torn_tail
from lm.metrics import read_eval_curve

if TYPE_CHECKING:
    import pandas as pd

    from experiments.configs import SweepConfig
    from experiments.plan import Plan, RunSpec

RESULTS_FILE = "results.jsonl"
REJECTED_FILE = "results.rejected.jsonl"
"""Lines `lm-sweep repair` took out of the table (kept, never deleted)."""
SWEEP_FILE = "sweep.json"
PLAN_FILE = "plan.json"
FINISHED = ("completed", "diverged")
TIMING_COLUMNS = ("wall_s", "train_s", "compile_s", "eval_s", "checkpoint_s", "data_s", "mfu",
                  "tokens_per_s", "peak_flops", "finished_at", "attempts")
"""Columns that vary between two executions of the same sweep (everything else is reproducible)."""


# ---------------------------------------------------------------------------------------------
# The folder's identity.

def check_sweep_dir(cfg: "SweepConfig") -> None:
    """Refuse a folder made by a different sweep config, or one that is not a sweep folder."""
    folder = cfg.directory
    path = os.path.join(folder, SWEEP_FILE)
    old = _read_sweep_file(path)
    if old is not None:
        current = json.loads(json.dumps(cfg.identity()))
        ignore = [f"train.{name}" for name in RESUME_CHANGES]
        diff = differences(with_field_defaults(with_train_template(old), cfg, current), current, ignore)
        if diff:
            raise ValueError(f"{folder} holds a sweep made by a different config ({', '.join(diff[:8])} "
                             f"differ{'...' if len(diff) > 8 else ''}); results of different sweeps are never "
                             f"mixed. Start a new sweep with another name or out_dir (lm-sweep run CONFIG --out "
                             f"sweeps/NEW), or delete {folder} to start this one over")
    elif os.path.isdir(folder) and set(os.listdir(folder)) - {".jax_cache", ".lock"}:
        raise ValueError(f"{folder} exists and is not a sweep folder (no {SWEEP_FILE}); nothing was written. "
                         "Pick an empty or new folder with --out")


def record_sweep(cfg: "SweepConfig", plan: "Plan") -> None:
    """Write sweep.json (once) and plan.json into the folder (after check_sweep_dir)."""
    from lm.io import atomic_write_json
    folder = cfg.directory
    os.makedirs(os.path.join(folder, "runs"), exist_ok=True)
    if not os.path.exists(os.path.join(folder, SWEEP_FILE)):
        atomic_write_json(os.path.join(folder, SWEEP_FILE), cfg.identity())
    atomic_write_json(os.path.join(folder, PLAN_FILE), plan.to_dict())


def load_sweep_config(folder: str) -> "SweepConfig":
    """The SweepConfig recorded in a sweep folder (its out_dir set to the folder)."""
    import dataclasses

    recorded = _read_sweep_file(os.path.join(folder, SWEEP_FILE))
    if recorded is None:
        raise ValueError(f"{folder} is not a sweep folder (no {SWEEP_FILE}); run `lm-sweep run CONFIG` first")
    return dataclasses.replace(from_dict(recorded), out_dir=folder)


def _read_sweep_file(path: str) -> dict[str, Any] | None:
    """sweep.json's fields (None: no such file); a damaged one is a one-line error with the fix."""
    from lm.records import read_json_object
    folder = os.path.dirname(path)
    return read_json_object(path, f"it records which sweep made {folder or '.'}: restore it from a copy, or "
                                  f"start the sweep over in a new folder (--out) or after deleting {folder or '.'}")


# ---------------------------------------------------------------------------------------------
# The results table.

def results_path(sweep_dir: str) -> str:
    return os.path.join(sweep_dir, RESULTS_FILE)


def make_row(spec: "RunSpec", sweep: str, convention: str, result: dict[str, Any], config: dict[str, Any],
             attempts: int) -> dict[str, Any]:
    """The table row of a finished run from its plan entry and its result.json."""
    tokens = int(result["tokens"])
    per_token = result.get("flops_per_token") or {}
    tokens_per_step = config["batch_size"] * config["data"]["seq_len"]
    curve = read_eval_curve(os.path.join(config["out_dir"], "metrics.jsonl"), tokens_per_step) or [
        {"step": e["step"], "tokens": e["step"] * tokens_per_step, "eval_loss": e["eval_loss"]}
        for e in result.get("eval_curve", [])]
    row = {
        "run_id": spec.run_id, "sweep": sweep, "kind": spec.kind,
        "schedule": "cosine" if spec.kind == "cosine" else "wsd",
        "budget": spec.budget, "shape": spec.shape.name, "d_model": spec.shape.d_model,
        "n_layers": spec.shape.n_layers, "n_encoder_layers": spec.shape.n_encoder_layers or 0, "n_heads": spec.shape.n_heads, "d_ff": spec.shape.d_ff,
        "N": spec.params, "N_nonembed": spec.params_nonembed, "D": tokens,
        "tokens_per_param": tokens / spec.params_nonembed, "convention": convention,
        "seed": config.get("seed"), "data_seed": config["data"].get("seed"),
        "C": float(per_token.get(convention, spec.flops_per_token)) * tokens,
    }
    for name in flops_lib.CONVENTIONS:
        row[f"C_{name}"] = float(per_token[name]) * tokens if name in per_token else None
    final = result.get("eval_loss")
    if final is None and curve and curve[-1]["step"] == result.get("steps"):
        final = curve[-1]["eval_loss"]   # resumed from its last checkpoint: lm.train logged the eval before
    row.update({
        "loss": final if result["status"] == "completed" else None,
        "train_loss": result.get("train_loss"), "eval_curve": curve,
        "entropy_floor": result.get("entropy_floor"), "status": result["status"],
        "message": result.get("message", ""), "steps": result.get("steps"), "attempts": attempts,
        "parent": spec.parent, "branch_step": spec.branch_step,
    })
    row.update(_learning_rates(config))
    for key in ("wall_s", "train_s", "compile_s", "eval_s", "checkpoint_s", "data_s", "mfu", "tokens_per_s",
                "peak_flops"):
        row[key] = result.get(key)
    row["config"] = config
    return row


def _learning_rates(config: dict[str, Any]) -> dict[str, Any]:
    """The run's parametrisation and peak learning rates by parameter group (lm/mup.py)."""
    from lm import mup
    from lm.config import ModelConfig
    from lm.config_fields import from_dict
    model = from_dict(ModelConfig, config["model"])
    lr = float(config["optim"]["learning_rate"])
    groups = mup.group_learning_rates(model, lr)
    return {"parametrization": model.parametrization, "learning_rate": lr, "lr_hidden": groups["hidden"],
            "width_mult": mup.width_mult(model)}


def repair(sweep_dir: str) -> None:
    """Truncate a torn last line (what a crash mid-append can leave) so the next append is clean."""
    truncate_torn_tail(results_path(sweep_dir))


def append_row(sweep_dir: str, row: dict[str, Any]) -> None:
    """Append one complete row (strict JSON: NaN/Inf become null, listed under "nonfinite"): a
    single write of one line, then fsync."""
    append_json_line(results_path(sweep_dir), row)


def _bad_row(row: Any) -> str | None:
    """Why one parsed line of the table is not a row (None when it is one)."""
    if not isinstance(row, dict):
        return "is not a JSON object"
    if not isinstance(row.get("run_id"), str):
        return "has no run_id"
    return None


def _bad_line(line: bytes) -> str | None:
    """Why one line of the table is not a row (None when it is one)."""
    try:
        row = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return "is not JSON"
    return _bad_row(row)


def read_rows(sweep_dir: str) -> list[dict[str, Any]]:
    """The rows of the table in file order, first row per run_id, a torn last line ignored. Any
    other bad line is an error naming the line and the fix."""
    fix = (lambda line: f"run `lm-sweep repair {sweep_dir}` (it moves bad lines to {REJECTED_FILE}), "
                        f"or delete line {line} by hand")
    rows, seen = [], set()
    for row in read_jsonl(results_path(sweep_dir), _bad_row, fix):
        if row["run_id"] not in seen:
            seen.add(row["run_id"])
            rows.append(row)
    return rows


def repair_table(sweep_dir: str) -> list[tuple[int, str]]:
    """Move every line that is not a row (and duplicate rows of a run) out of the table into
    REJECTED_FILE; returns [(line number, why)]. The runs of rejected lines train or are
    recorded again on the next `lm-sweep run`."""
    path = results_path(sweep_dir)
    if not os.path.exists(path):
        return []
    with open(path, "rb") as f:
        lines = [line for line in f.read().split(b"\n")]
    kept, rejected, seen = [], [], set()
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        problem = _bad_line(line)
        if problem is None:
            run_id = json.loads(line)["run_id"]
            problem = "repeats run " + run_id if run_id in seen else None
            seen.add(run_id)
        if problem:
            rejected.append((i + 1, problem, line))
        else:
            kept.append(line)
    if rejected:
        with open(os.path.join(sweep_dir, REJECTED_FILE), "ab") as f:
            for _, _, line in rejected:
                f.write(line + b"\n")
            f.flush()
            os.fsync(f.fileno())
        atomic_write_text(path, "".join(line.decode() + "\n" for line in kept))
    return [(n, why) for n, why, _ in rejected]


def load_results(sweep_dir: str, *, fit_only: bool = False) -> "pd.DataFrame":
    """The results table as a DataFrame, one row per finished run (columns: module docstring).

    fit_only: only the runs a fit should see (status 'completed' with a finite loss; diverged runs
    are recorded but left out)."""
    import numpy as np
    import pandas as pd

    if not os.path.isdir(sweep_dir):
        raise ValueError(f"{sweep_dir} is not a directory; pass a sweep folder (e.g. sweeps/default)")
    frame = pd.DataFrame(read_rows(sweep_dir))
    if frame.empty:
        return frame
    if fit_only:
        ok = (frame["status"] == "completed") & np.isfinite(frame["loss"].astype(float))
        frame = frame[ok].reset_index(drop=True)
    return frame
