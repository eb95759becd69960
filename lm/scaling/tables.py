"""Reading a table for lm-fit: a CSV, or a sweep's results (its folder or its results.jsonl).

A sweep's results.jsonl holds one JSON object per finished run (experiments/results.py). The
fits read its completed cosine runs (WSD cooldowns and diverged runs are left out, as the sweep
report does): N is the non-embedding count under the "6n" convention (so C = 6 N D holds) and the
total count under any other, D the tokens, C the run's FLOPs in the sweep's convention, budget
the nominal IsoFLOP budget, run the run id.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

RESULTS_FILE = "results.jsonl"


def is_sweep(path: Path) -> bool:
    return path.is_dir() or path.suffix == ".jsonl"


def read_sweep(path: Path) -> pd.DataFrame:
    """A sweep folder or results.jsonl -> run, N, D, C, loss, budget (completed cosine runs)."""
    file = path / RESULTS_FILE if path.is_dir() else path
    if not file.exists():
        raise ValueError(f"{path} has no {RESULTS_FILE}: give a sweep folder (sweeps/NAME) or its results.jsonl, "
                         "or a CSV")
    rows = []
    for i, line in enumerate(file.read_text().splitlines()):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            raise ValueError(f"{file} line {i + 1} is not JSON; `lm-sweep repair {file.parent}` moves bad lines "
                             "aside") from None
    frame = pd.DataFrame(rows)
    need = {"kind", "status", "loss", "N", "D", "C", "budget"}
    if not need <= set(frame.columns):
        raise ValueError(f"{file} lacks the sweep columns {sorted(need - set(frame.columns))}; is it a sweep's "
                         "results table?")
    ok = (frame["kind"] == "cosine") & (frame["status"] == "completed") & frame["loss"].notna()
    rows = frame[ok]
    if "run_id" in rows:     # not the order the workers finished: a bootstrap resamples rows by position
        rows = rows.sort_values("run_id", kind="mergesort")
    if rows.empty:
        raise ValueError(f"{file} has no completed cosine run to fit ({len(frame)} rows: "
                         f"{frame['status'].value_counts().to_dict()})")
    six_n = "convention" not in rows or (rows["convention"] == "6n").all()
    n_col = "N_nonembed" if six_n and "N_nonembed" in rows else "N"
    return pd.DataFrame({"run": rows["run_id"].to_numpy() if "run_id" in rows else range(len(rows)),
                         "N": rows[n_col].astype(float).to_numpy(), "D": rows["D"].astype(float).to_numpy(),
                         "C": rows["C"].astype(float).to_numpy(), "loss": rows["loss"].astype(float).to_numpy(),
                         "budget": rows["budget"].astype(float).to_numpy()})
