"""What `lm-fit` and `lm-sweep fit` do with a table and FitOptions: fit, choose, forecast, write.

    code = run_fit(table, opts, out_dir, title="lm-fit results.csv")

1. the shape (runs | minima) and, with --holdout-above/--holdout, the cut: every fit below sees
   only the budgets under it;
2. fit_approaches (Approaches 1-3 and the frontier law; unidentified fits dropped with their reason);
3. with any forecast option: the walk-forward choice (walkforward.choose) and forecast.csv
   (aim.forecast_rows: the held-out budgets and runs, the --predict budgets);
4. summary.txt, allocations.csv (the data's budgets plus --budgets/--predict, extrapolated rows
   marked), fit.json, forecast.csv, the plots.
No exception from a fit escapes: each is one line naming the approach. Returns 0 when one
approach fits, 2 (one line on stderr) when none can.
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from lm.scaling.aim import COLUMNS, forecast_lines, forecast_rows, holdout
from lm.scaling.approaches import fit_approaches
from lm.scaling.fitoptions import FitOptions
from lm.scaling.frontier import prepare_minima
from lm.scaling.results import budgets_of, prepare_results, table_shape
from lm.scaling.walkforward import choose, split_data


def write_atomic(path: Path, text: str) -> None:
    """Write text to path through a temporary file in the same folder (mode from the umask)."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def data_budgets(table: pd.DataFrame, shape: str, flops_per_token=None) -> list[float]:
    if shape == "minima":
        return sorted(set(prepare_minima(table)["budget"].tolist()))
    return sorted(set(np.unique(budgets_of(prepare_results(table, flops_per_token))).tolist()))


def fit_and_forecast(table: pd.DataFrame, opts: FitOptions, *, curves=None, flops_per_token=None,
                     final_points: bool = False):
    """(Approaches, Choice or None, forecast rows, report lines) for a table under opts."""
    lines: list[str] = []
    shape = table_shape(table, opts.table)
    fit_table, held, choice, rows = table, None, None, pd.DataFrame(columns=COLUMNS)
    if opts.holdout_above is not None or opts.holdout is not None:
        data = split_data(table, shape, window=opts.window, flops_per_token=flops_per_token)
        fit_table, held = holdout(data, above=opts.holdout_above, k=opts.holdout)
        cut = held.observed["budget"].min()
        lines.append(f"Held out: {len(held.observed)} budgets at or above {cut:.3g} FLOPs"
                     + (f" ({len(held.runs)} runs)" if held.runs is not None else "")
                     + f"; every fit below sees the {len(data.observed) - len(held.observed)} budgets under it")
    budgets = sorted(set(data_budgets(fit_table, shape, flops_per_token)) | set(opts.budgets) | set(opts.predict))
    res = fit_approaches(fit_table, curves, flops_per_token=flops_per_token, budgets=budgets,
                         n_bootstrap=opts.bootstrap, seed=opts.seed, approaches=opts.approaches,
                         final_points=final_points, window=opts.window, method=opts.method,
                         constraints=opts.constraints, table=shape)
    if opts.forecasting:
        try:
            choice = choose(fit_table, shape=shape, max_splits=opts.max_splits, window=opts.window,
                            flops_per_token=flops_per_token)
            lines.append(choice.summary())
            rows = forecast_rows(choice, held, opts.predict)
            lines += forecast_lines(rows) if held is not None or opts.predict else []
        except Exception as err:  # noqa: BLE001 - a forecast failing never hides the fits
            lines.append(f"Walk-forward: not run: {err if isinstance(err, ValueError) else repr(err)}")
    return res, choice, rows, lines


def fitted_any(res) -> bool:
    return any(x is not None for x in (res.approach1, res.approach2, res.approach3, res.approach3_vpnls,
                                        res.frontier))


def run_fit(table: pd.DataFrame, opts: FitOptions, out: Path, *, title: str, curves=None, flops_per_token=None,
            final_points: bool = False, plots: bool = True, extra=None, prog: str = "lm-fit") -> int:
    """Fit, choose, forecast and write (module doc). extra(res) -> (lines, record) adds fits."""
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            res, choice, rows, lines = fit_and_forecast(table, opts, curves=curves, flops_per_token=flops_per_token,
                                                        final_points=final_points)
            more, record = extra(res) if extra else ([], {})
    except ValueError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2
    if not fitted_any(res):
        why = "; ".join(f"{a}: {r}" for a, r in res.failed) or "no approach was asked for"
        print(f"{prog}: error: no approach could be fitted ({why})", file=sys.stderr)
        return 2
    text = [title, res.summary(), *lines, *more]
    text += [f"Warning: {w.message}" for w in caught]
    print("\n".join(text))
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "summary.txt", "\n".join(text) + "\n")
    write_atomic(out / "allocations.csv", res.allocation_table().to_csv(index=False))
    record.update(fit_record(res, opts, choice))
    write_atomic(out / "fit.json", json.dumps(record, indent=1, default=_plain) + "\n")
    written = [out / "summary.txt", out / "allocations.csv", out / "fit.json"]
    if opts.forecasting:
        write_atomic(out / "forecast.csv", rows.to_csv(index=False))
        written.append(out / "forecast.csv")
    if plots:
        written += _plots(res, table, out, rows, flops_per_token)
    print(f"wrote {', '.join(str(p) for p in written)}")
    return 0


def _plots(res, table, out, rows, flops_per_token) -> list[Path]:
    from lm.scaling.frontier_plot import plot_frontier
    from lm.scaling.plots import save_figure, write_plots
    paths = []
    try:
        if res.shape == "runs" and any(x is not None for x in (res.approach1, res.approach2, res.approach3)):
            paths += write_plots(res, table, out, flops_per_token)
        if res.frontier is not None:
            paths += save_figure(plot_frontier(res.frontier, rows), out / "frontier")
    except Exception as err:  # noqa: BLE001 - a plot failing never loses the fits written
        print(f"plots: failed ({type(err).__name__}: {err})", file=sys.stderr)
    return paths


def fit_record(res, opts: FitOptions, choice=None) -> dict:
    """What fit.json records: the choices made, every approach's estimates, the walk-forward."""
    rec = {"options": opts.as_dict(), "shape": res.shape, "notes": list(res.notes),
           "failed": [dict(approach=a, reason=r) for a, r in res.failed],
           "estimates": {name: {k: vars(e) for k, e in est.items()} for name, est in res.estimates().items()},
           "isoflops": res.approach2.isoflops.to_dict("records") if res.approach2 is not None else None}
    if res.frontier is not None:
        rec["frontier"] = {k: vars(e) for k, e in res.frontier.estimates.items()}
    if choice is not None:
        rec["walk_forward"] = dict(chosen=choice.chosen, reason=choice.reason, origins=list(choice.origins),
                                   table=choice.table.to_dict("records"))
    return rec


def _plain(x):
    return x.item() if isinstance(x, np.generic) else str(x)
