"""What `lm-fit` and `lm-sweep fit` do with a table and FitOptions: fit, choose, forecast, write.

    code = run_fit(table, opts, out_dir, title="lm-fit results.csv")

1. the shape (runs | minima) and, with --holdout-above/--holdout, the cut: every fit below sees
   only the budgets under it;
2. fit_approaches (Approaches 1-3 and the frontier law; unidentified fits dropped with their reason);
3. with any forecast option: the walk-forward choice (walkforward.choose) and forecast.csv
   (aim.forecast_rows: the held-out budgets and runs, the --predict budgets);
4. summary.txt, allocations.csv (the data's budgets plus --budgets/--predict, extrapolated rows
   marked), fit.json, forecast.csv, the plots (PNG; SVG on request).
No exception from a fit escapes: each is one line naming the approach. Returns 0 when one
approach fits, 2 (one line on stderr) when none can.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from lm.scaling.aim import COLUMNS, forecast_lines, forecast_rows, holdout
from lm.scaling.approaches import fit_approaches
from lm.scaling.bootstrap import REFIT_POINTS
from lm.scaling.fit import chinchilla_grid, chinchilla_objective_for, jax_offset_objective, offset_grid
from lm.scaling.fitoptions import FitOptions
from lm.scaling.frontier import frontier_minima, prepare_minima
from lm.scaling.optimize import compile_ahead
from lm.scaling.plotfits import lowest_loss_runs
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


def compile_fits_ahead(n_rows: int, points: tuple[int, int], opts: FitOptions,
                       shape: str = "runs") -> threading.Thread:
    """Start compiling, in background threads, the L-BFGS programs fit_approaches will run on a
    table of n_rows rows: Approach 3's grid fit (runs table, method grid) in one, beside it the
    offset law's fits on points = (the frontier law's minima, the loss-vs-compute figure's points;
    offset_points) and the frontier bootstrap's refits in another. The fits then find them
    compiled, or wait for them, while the other core did other work; their results do not change
    (the same programs run). Returns a thread that ends when every compilation has."""
    first, offsets = [], []
    if shape == "runs" and 3 in opts.approaches and opts.method == "grid":
        cons = opts.constraints
        objective, data_of, _ = chinchilla_objective_for(None if cons.default else cons, cons.delta)
        ones = np.ones(n_rows)
        first.append((objective, len(chinchilla_grid()), 5, n_rows, data_of(ones, ones, ones)))
    for n in sorted({n for n in points if n >= 4}):
        offsets.append((jax_offset_objective, len(offset_grid()), 3, n, (np.zeros(n),) * 2 + (np.float64(1.0),)))
    if points[0] >= 4 and "frontier" in opts.approaches and opts.bootstrap != 0:   # <= 32 problems a call
        offsets.append((jax_offset_objective, 32, 3, REFIT_POINTS, (np.zeros(REFIT_POINTS),) * 2 + (np.float64(1.0),)))
    return compile_ahead_all(first, offsets)


def offset_points(table: pd.DataFrame, shape: str, opts: FitOptions, flops_per_token=None,
                  figure: bool = False) -> tuple[int, int]:
    """How many points the offset-law fits on this table will have: (the frontier law's minima: a
    minima table's rows, a runs table's parabola minima inside the sizes used; with figure, the
    loss-vs-compute figure's: every budget's minimum when >= 4, else the lowest-loss runs; else 0)."""
    if shape == "minima":
        return len(table), 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # the fits warn about these budgets themselves
        n_minima = len(frontier_minima(table, window=opts.window, flops_per_token=flops_per_token))
    if not figure:
        return n_minima, 0
    df = prepare_results(table, flops_per_token)
    n_budgets = len(np.unique(budgets_of(df)))
    if n_budgets >= 4:
        return n_minima, n_budgets
    return n_minima, len(lowest_loss_runs(df["C"].to_numpy(), df["loss"].to_numpy())[0])


def compile_ahead_all(*queues) -> threading.Thread:
    """Compile each queue of (objective, n_problems, n_params, n_points, data) jobs in turn, the
    queues side by side, one thread each; returns a thread that ends when all of them have."""
    threads = [threading.Thread(target=lambda q=q: [compile_ahead(*job).join() for job in q],
                                name="fits-compile-ahead") for q in queues if q]
    for t in threads:
        t.start()
    waiter = threading.Thread(target=lambda: [t.join() for t in threads], name="fits-compile-ahead-all")
    waiter.start()
    return waiter


def fit_and_forecast(table: pd.DataFrame, opts: FitOptions, *, curves=None, flops_per_token=None,
                     final_points: bool = False, figure: bool = False):
    """(Approaches, Choice or None, forecast rows, report lines) for a table under opts. With a
    forecast option, the walk-forward choice runs in a second thread beside the approaches' fits
    (independent computations: the same results either way, on two cores in about the time of the
    longer one). figure: the figures will be drawn (their offset-law fit is compiled ahead too)."""
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
    data_b = data_budgets(fit_table, shape, flops_per_token)  # the table's checks, before any compile
    try:
        points = offset_points(fit_table, shape, opts, flops_per_token, figure)
    except Exception:  # noqa: BLE001 - the fits meet (and report) the same problem themselves
        points = (0, 0)
    ahead = compile_fits_ahead(len(fit_table), points, opts, shape)
    budgets = sorted(set(data_b) | set(opts.budgets) | set(opts.predict))
    if figure:   # import matplotlib while the first program compiles
        import lm.scaling.frontier_plot  # noqa: F401
        import lm.scaling.plots  # noqa: F401
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="walk-forward") as pool:
        walk = (pool.submit(walk_forward, fit_table.copy(), shape, opts, held, flops_per_token)
                if opts.forecasting else None)
        res = fit_approaches(fit_table, curves, flops_per_token=flops_per_token, budgets=budgets,
                             n_bootstrap=opts.bootstrap, seed=opts.seed, approaches=opts.approaches,
                             final_points=final_points, window=opts.window, method=opts.method,
                             constraints=opts.constraints, table=shape)
        ahead.join()
        if walk is not None:
            choice, rows, more = walk.result()
            lines += more
    return res, choice, rows, lines


def walk_forward(fit_table: pd.DataFrame, shape: str, opts: FitOptions, held, flops_per_token=None):
    """(Choice or None, forecast rows, report lines) of the walk-forward choice on fit_table."""
    choice, rows, lines = None, pd.DataFrame(columns=COLUMNS), []
    try:
        choice = choose(fit_table, shape=shape, max_splits=opts.max_splits, window=opts.window,
                        flops_per_token=flops_per_token)
        lines.append(choice.summary())
        rows = forecast_rows(choice, held, opts.predict)
        lines += forecast_lines(rows) if held is not None or opts.predict else []
    except Exception as err:  # noqa: BLE001 - a forecast failing never hides the fits
        lines.append(f"Walk-forward: not run: {err if isinstance(err, ValueError) else repr(err)}")
    return choice, rows, lines


def warning_lines(caught) -> list[str]:
    """One "Warning: ..." line per distinct warning message, sorted: the same lines whichever thread
    warned first."""
    return [f"Warning: {m}" for m in sorted({str(w.message) for w in caught})]


def fitted_any(res) -> bool:
    return any(x is not None for x in (res.approach1, res.approach2, res.approach3, res.approach3_vpnls,
                                        res.frontier))


def run_fit(table: pd.DataFrame, opts: FitOptions, out: Path, *, title: str, curves=None, flops_per_token=None,
            final_points: bool = False, plots: bool = True, extra=None, prog: str = "lm-fit",
            formats=("png",)) -> int:
    """Fit, choose, forecast and write (module doc). extra(res) -> (lines, record) adds fits;
    formats: the figures' files (png and/or svg)."""
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            res, choice, rows, lines = fit_and_forecast(table, opts, curves=curves, flops_per_token=flops_per_token,
                                                        final_points=final_points, figure=plots)
            more, record = extra(res) if extra else ([], {})
    except ValueError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2
    if not fitted_any(res):
        why = "; ".join(f"{a}: {r}" for a, r in res.failed) or "no approach was asked for"
        print(f"{prog}: error: no approach could be fitted ({why})", file=sys.stderr)
        return 2
    text = [title, res.summary(), *lines, *more]
    text += warning_lines(caught)
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
        written += _plots(res, table, out, rows, flops_per_token, formats)
    print(f"wrote {', '.join(str(p) for p in written)}")
    return 0


def _plots(res, table, out, rows, flops_per_token, formats) -> list[Path]:
    from lm.scaling.frontier_plot import plot_frontier
    from lm.scaling.plots import save_figure, write_plots
    paths = []
    try:
        if res.shape == "runs" and any(x is not None for x in (res.approach1, res.approach2, res.approach3)):
            paths += write_plots(res, table, out, flops_per_token, formats)
        if res.frontier is not None:
            paths += save_figure(plot_frontier(res.frontier, rows), out / "frontier", formats)
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
