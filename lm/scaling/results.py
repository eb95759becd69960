"""The results table the approaches read: validation, FLOP conventions, budgets, curves.

A results table is a pandas DataFrame with one row per training run:
    N      parameters (the count your FLOP convention uses)
    D      training tokens            } give D or C (or both); the missing one is
    C      training FLOPs             } derived as D = C / f(N) or C = f(N) D
    loss   final loss, nats/token
    budget (optional) the nominal IsoFLOP budget the run belongs to (Approach 2 groups by it;
           without it runs are grouped by clustering log10 C)
    run    (optional) a run id, used to join curves and to name bad rows
f(N) is the FLOP convention, FLOPs per token (`laws.six_n` by default: C = 6ND).

Per-run loss curves (Approach 1) are a long DataFrame with columns run, tokens, loss (one row
per logged point; N comes from the results row with the same run id, or from an N column in
the curves frame). `curves_from_column` converts a `curve` column of [(tokens, loss), ...].
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from lm.scaling.laws import FlopsPerToken, six_n


def _bad_rows(df: pd.DataFrame, mask: np.ndarray) -> str:
    labels = df["run"].to_numpy()[mask] if "run" in df.columns else df.index.to_numpy()[mask]
    shown = ", ".join(str(x) for x in labels[:10])
    return f"{shown}{' ...' if mask.sum() > 10 else ''} ({int(mask.sum())} rows)"


def flops_per_token_at(f: FlopsPerToken | None, N: np.ndarray) -> np.ndarray:
    f = six_n if f is None else f
    return np.array([float(f(n)) for n in N]) if f is not six_n else 6.0 * N


def prepare_results(results: pd.DataFrame, flops_per_token: FlopsPerToken | None = None) -> pd.DataFrame:
    """Validated copy of a results table with N, D, C and loss all present (float64).

    Raises ValueError naming the missing column, or the column and rows (run ids or index
    labels) holding non-positive or non-finite values.
    """
    if not isinstance(results, pd.DataFrame):
        raise ValueError(f"results must be a pandas DataFrame, got {type(results).__name__}")
    missing = [c for c in ("N", "loss") if c not in results.columns]
    if "D" not in results.columns and "C" not in results.columns:
        missing.append("D or C")
    if missing:
        raise ValueError(f"results table lacks column(s) {missing}; it has {list(results.columns)}. "
                         "Rename columns to N, D (or C), loss (lm-fit: --n-col/--d-col/--c-col/--loss-col)")
    df = results.copy()
    for col in ("N", "D", "C", "loss", "budget"):
        if col not in df.columns:
            continue
        v = pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=np.float64)
        bad = ~(np.isfinite(v) & (v > 0))
        if bad.any():
            raise ValueError(f"column {col!r} must be finite and > 0; bad rows: {_bad_rows(df, bad)}")
        df[col] = v
    fpt = flops_per_token_at(flops_per_token, df["N"].to_numpy())
    if "D" not in df.columns:
        df["D"] = df["C"].to_numpy() / fpt
    if "C" not in df.columns:
        df["C"] = fpt * df["D"].to_numpy()
    if len(df) == 0:
        raise ValueError("results table has no rows")
    return df


LOSS_UNITS_NATS = 20.0
"""A median loss above this many nats/token suggests the wrong units (perplexity, bits x 100, ...)."""


def check_table(df: pd.DataFrame) -> list[str]:
    """Warnings about a prepared results table: duplicated (N, D) points and implausible units.

    Returns the messages (also issued as UserWarning). Duplicates are kept in the fit (they
    are runs, e.g. seeds), but every minimum-points check counts distinct (N, D) only.
    """
    import warnings

    msgs = []
    dup = int(df.duplicated(subset=["N", "D"]).sum())
    if dup:
        msgs.append(f"{dup} of {len(df)} rows repeat an (N, D) point already in the table (seeds or "
                    f"copies); {len(df) - dup} distinct points - minimum-point checks count distinct ones")
    med = float(np.median(df["loss"]))
    if med > LOSS_UNITS_NATS:
        msgs.append(f"median loss {med:.4g} > {LOSS_UNITS_NATS:g}: losses look like the wrong units "
                    "(the fits expect nats/token; convert perplexity with log, bits with x ln 2)")
    for m in msgs:
        warnings.warn(m, stacklevel=3)
    return msgs


def group_budgets(C, tol_dex: float = 0.05) -> np.ndarray:
    """Budget label per run [n] from FLOPs C [n]: clusters of log10 C split at gaps > tol_dex.

    Each cluster's label is the geometric mean of its C. For an IsoFLOP sweep, pass the
    nominal budget as a `budget` column instead.
    """
    lc = np.log10(np.asarray(C, float))
    order = np.argsort(lc)
    cluster = np.concatenate([[0], np.cumsum(np.diff(lc[order]) > tol_dex)])
    labels = np.empty_like(lc)
    for c in np.unique(cluster):
        members = order[cluster == c]
        labels[members] = 10 ** lc[members].mean()
    return labels


def budgets_of(df: pd.DataFrame, tol_dex: float = 0.05) -> np.ndarray:
    """The `budget` column if present, else `group_budgets(C)`."""
    if "budget" in df.columns:
        return df["budget"].to_numpy(dtype=np.float64)
    return group_budgets(df["C"].to_numpy(), tol_dex)


def curves_from_column(results: pd.DataFrame, column: str = "curve") -> pd.DataFrame:
    """Long curves frame (run, N, tokens, loss) from a column of [(tokens, loss), ...] per run."""
    if column not in results.columns:
        raise ValueError(f"results has no {column!r} column; columns are {list(results.columns)}")
    runs = results["run"] if "run" in results.columns else pd.Series(results.index, index=results.index)
    rows = []
    for run, n, curve in zip(runs, results["N"], results[column]):
        arr = np.asarray(curve, dtype=np.float64).reshape(-1, 2)
        rows.append(pd.DataFrame({"run": run, "N": float(n), "tokens": arr[:, 0], "loss": arr[:, 1]}))
    return pd.concat(rows, ignore_index=True)


def prepare_curves(curves: pd.DataFrame, results: pd.DataFrame,
                   flops_per_token: FlopsPerToken | None = None) -> pd.DataFrame:
    """Validated curves (run, N, tokens, loss, C) with C = f(N) * tokens."""
    missing = [c for c in ("run", "tokens", "loss") if c not in curves.columns]
    if missing:
        raise ValueError(f"curves frame lacks column(s) {missing}; it needs run, tokens, loss")
    cv = curves.copy()
    if "N" not in cv.columns:
        if "run" not in results.columns:
            raise ValueError("curves have no N column and results have no run column to join on; "
                             "add a run column to results (or N to curves)")
        n_of = dict(zip(results["run"], results["N"]))
        unknown = ~cv["run"].isin(list(n_of))
        if unknown.any():
            raise ValueError(f"curves name runs absent from results: {sorted(set(cv['run'][unknown]))[:10]}")
        cv["N"] = cv["run"].map(n_of)
    for col in ("N", "tokens", "loss"):
        v = pd.to_numeric(cv[col], errors="coerce").to_numpy(dtype=np.float64)
        bad = ~(np.isfinite(v) & (v > 0))
        if bad.any():
            raise ValueError(f"curves column {col!r} must be finite and > 0; bad rows: {_bad_rows(cv, bad)}")
        cv[col] = v
    cv["C"] = flops_per_token_at(flops_per_token, cv["N"].to_numpy()) * cv["tokens"].to_numpy()
    return cv


SHAPES = ("auto", "runs", "minima")
"""Table shapes: "runs" (one row per training run: N, D or C, loss) or "minima" (one row per
budget: C, loss, optionally N and D of the compute-optimal model); "auto" picks minima when
every budget has exactly one row (or the table has no N column), else runs."""


def table_shape(table: pd.DataFrame, shape: str = "auto", tol_dex: float = 0.05) -> str:
    """Resolve `shape` for a table: "runs" or "minima" (ValueError for an unknown shape)."""
    if shape not in SHAPES:
        raise ValueError(f"table shape {shape!r}: use one of {', '.join(SHAPES)} (lm-fit --table)")
    if shape != "auto":
        return shape
    if "N" not in table.columns:
        return "minima"
    prepare_results(table)  # a table with N is read as runs unless it proves one row per budget
    if "budget" in table.columns:
        C = pd.to_numeric(table["budget"], errors="coerce").to_numpy(float)
    elif "C" in table.columns:
        C = pd.to_numeric(table["C"], errors="coerce").to_numpy(float)
    elif "D" in table.columns:
        C = 6.0 * pd.to_numeric(table["N"], errors="coerce").to_numpy(float) * pd.to_numeric(
            table["D"], errors="coerce").to_numpy(float)
    else:
        return "runs"
    C = C[np.isfinite(C) & (C > 0)]
    if len(C) == 0:
        return "runs"
    labels = C if "budget" in table.columns else group_budgets(C, tol_dex)
    return "minima" if len(np.unique(labels)) == len(C) else "runs"
