"""`lm-fit FILE`: fit scaling laws to a results CSV and print Chinchilla-style tables.

Examples:
    lm-fit sweeps/default/results.csv
    lm-fit epoch_chinchilla_svg_extracted_data.csv --n-col "Model Size" --c-col "Training FLOP" \\
        --drop-highest-loss 5
    lm-fit open_athena_isoflops.csv --n-col params --d-col tokens \\
        --query "source == 'epochai_chinchilla'"

    lm-fit epoch_chinchilla_svg_extracted_data.csv ... --method vpnls --fix-E 1.69 --forecast
    lm-fit muennighoff2023_datablations_runs.csv --loss-col val_loss --u-col U_unique_tokens \\
        --run-col run_name --data-constrained --approaches 3 --tie-exponents

Prints Approach 3's parameters with bootstrap intervals, each approach's exponents, and the
compute-optimal N and D for a list of budgets (Chinchilla's Table 3 by default); writes
summary.txt, allocations.csv, fit.json (every estimate and the fit's choices: method,
constraints, window) and the figures (PNG and SVG) to --out. Bad flags: one line, exit 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from lm.scaling.approaches import CHINCHILLA_TABLE3_BUDGETS, METHODS, fit_approaches
from lm.scaling.bootstrap import sized_resamples
from lm.scaling.constraints import FitConstraints
from lm.scaling.datalimited import RECIPES, fit_data_constrained_table
from lm.scaling.fit import fit_kaplan
from lm.scaling.forecast import forecast
from lm.scaling.isoflop import check_window
from lm.scaling.kaplan import kaplan_fits
from lm.scaling.results import prepare_results


class _OneLineParser(argparse.ArgumentParser):
    """Bad flags: one line on stderr ("lm-fit: error: ..."), exit 2 (no usage dump)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see lm-fit --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _OneLineParser(prog="lm-fit", description=__doc__.split("\n\n")[0],
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("file", type=Path, help="CSV with one row per run: N, D (or C), loss")
    p.add_argument("--n-col", default="N", help="column of parameter counts (default N)")
    p.add_argument("--d-col", default="D", help="column of training tokens (default D)")
    p.add_argument("--c-col", default="C", help="column of training FLOPs (default C)")
    p.add_argument("--loss-col", default="loss", help="column of final losses (default loss)")
    p.add_argument("--budget-col", default="budget",
                   help="column of nominal IsoFLOP budgets for Approach 2 (default budget; "
                        "absent: runs are grouped by clustering log10 C)")
    p.add_argument("--run-col", default="run", help="column of run ids (joins --curves)")
    p.add_argument("--d-from-c", action="store_true", help="ignore any D column and use D = C/(6N)")
    p.add_argument("--curves", type=Path, help="long CSV of loss curves (run, tokens, loss) for Approach 1")
    p.add_argument("--final-points", action="store_true",
                   help="without curves, run Approach 1 on the frontier of final losses")
    p.add_argument("--query", help="pandas query selecting rows, e.g. \"source == 'x'\"")
    p.add_argument("--drop-highest-loss", type=int, default=0, metavar="K",
                   help="drop the K highest-loss rows (Epoch dropped 5 from Chinchilla's data)")
    p.add_argument("--budgets", default=",".join(f"{c:g}" for c in CHINCHILLA_TABLE3_BUDGETS),
                   help="comma-separated FLOP budgets for the allocation table")
    p.add_argument("--approaches", default="1,2,3", help="which approaches to run (default 1,2,3)")
    p.add_argument("--bootstrap", type=int, default=None, help="bootstrap resamples (default: 1000 for tables of "
                   ">= 100 rows, else 10 per row, at least 200)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--kaplan", action="store_true",
                   help="also fit Kaplan's L(N, D) and the single-variable L(N), L(D), L(C_min) with bootstrap")
    p.add_argument("--method", default="grid", help="Approach 3's fitter: grid (L-BFGS from Chinchilla's 4,500 "
                   "starts; default) or vpnls (variable projection)")
    p.add_argument("--fix-E", type=float, metavar="E", help="hold the irreducible loss E fixed (nats/token)")
    p.add_argument("--tie-exponents", action="store_true", help="fit one exponent alpha = beta")
    p.add_argument("--huber-delta", type=float, default=1e-3, help="Huber threshold (default 1e-3)")
    p.add_argument("--loss-space", default="log", help="residuals in log (default) or linear space")
    p.add_argument("--window", default="auto", help="Approach 2's parabola window: auto (default: sizes within x4 "
                   "of each minimum, at least 5), k nearest sizes (e.g. 5), xF for sizes within a factor F (e.g. x4), or all")
    p.add_argument("--forecast", action="store_true",
                   help="hold back the largest 1 and 2 budgets, predict them, print the error table")
    p.add_argument("--data-constrained", action="store_true",
                   help="fit Muennighoff et al.'s data-constrained law (needs a U column: --u-col)")
    p.add_argument("--u-col", default="U", help="column of unique tokens for --data-constrained (default U)")
    p.add_argument("--dc-recipe", default="auto", choices=RECIPES,
                   help="--data-constrained recipe: datablations (Muennighoff et al.'s runs, base law and starts; "
                        "needs --run-col), single-epoch (base law fitted on this table's single-epoch runs), or "
                        "auto (datablations on their own table, else single-epoch; default)")
    p.add_argument("--out", type=Path, help="output folder (default ./<FILE's stem>_fit)")
    p.add_argument("--no-plots", action="store_true")
    p.add_argument("--compile-cache", default="user",
                   help="persistent XLA compilation cache folder: user (default: $LM_COMPILE_CACHE, else "
                        "~/.cache/lm/xla, shared with sweeps), a folder, or none: a second lm-fit skips "
                        "compiling the fits")
    return p


def load_results(args: argparse.Namespace) -> pd.DataFrame:
    """Read the CSV and map its columns to N, D, C, loss, budget, run."""
    if not args.file.exists():
        raise ValueError(f"no such file: {args.file}")
    raw = pd.read_csv(args.file)
    if args.query:
        try:
            raw = raw.query(args.query)
        except Exception as err:  # noqa: BLE001 - pandas raises many kinds for a bad expression
            raise ValueError(f"--query {args.query!r} is not a valid pandas query on columns "
                             f"{list(raw.columns)}: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}") from None
        if raw.empty:
            raise ValueError(f"--query {args.query!r} selects no rows")
    names = {args.n_col: "N", args.d_col: "D", args.c_col: "C", args.loss_col: "loss",
             args.budget_col: "budget", args.run_col: "run", args.u_col: "U"}
    for want in (args.n_col, args.loss_col):
        if want not in raw.columns:
            raise ValueError(f"{args.file} has no column {want!r}; columns: {list(raw.columns)} "
                             "(set --n-col/--loss-col)")
    df = raw[[c for c in names if c in raw.columns]].rename(columns=names)
    if args.d_from_c:
        if "C" not in df.columns:
            raise ValueError(f"--d-from-c needs a FLOPs column {args.c_col!r} (set --c-col)")
        df = df.drop(columns=["D"], errors="ignore")
    if args.drop_highest_loss:
        df = df.drop(index=df["loss"].nlargest(args.drop_highest_loss).index)
    return df.reset_index(drop=True)


def parse_list(text: str, flag: str, kind, allowed=None) -> list:
    """Comma-separated values of `kind`; ValueError naming the flag and the bad item."""
    items = [x.strip() for x in text.split(",") if x.strip()]
    if not items:
        raise ValueError(f"{flag} {text!r} is empty; give comma-separated values")
    out = []
    for x in items:
        try:
            v = kind(x)
        except ValueError:
            raise ValueError(f"{flag}: {x!r} is not a {kind.__name__}; e.g. {flag} "
                             f"{'1,2,3' if kind is int else '1e21,5.76e23'}") from None
        if allowed is not None and v not in allowed:
            raise ValueError(f"{flag}: unknown value {x!r}; choose from {', '.join(map(str, allowed))}")
        if kind is float and not (np.isfinite(v) and v > 0):
            raise ValueError(f"{flag}: {x!r} must be a positive finite number of FLOPs")
        out.append(v)
    return out


def parse_window(text: str):
    """'auto' -> 'auto', '5' -> 5, 'x4' -> 4.0, 'all' -> None."""
    t = text.strip().lower()
    try:
        window = t if t == "auto" else None if t == "all" else float(t[1:]) if t.startswith("x") else int(t)
    except ValueError:
        raise ValueError(f"--window {text!r}: use auto, an int k (nearest sizes), xF (a factor, e.g. x4) or all") from None
    check_window(window)
    return window


def fit_options(args: argparse.Namespace) -> dict:
    """Validated fit choices from the command line (recorded in fit.json)."""
    if args.method not in METHODS:
        raise ValueError(f"--method {args.method!r}: choose from {', '.join(METHODS)}")
    constraints = FitConstraints(fix_E=args.fix_E, tie_exponents=args.tie_exponents, delta=args.huber_delta,
                                 space=args.loss_space)
    return dict(budgets=parse_list(args.budgets, "--budgets", float),
                approaches=tuple(parse_list(args.approaches, "--approaches", int, (1, 2, 3))),
                method=args.method, constraints=constraints, window=parse_window(args.window))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from lm import compile_cache
    cache = {"user": compile_cache.user_dir(), "none": None}.get(args.compile_cache, args.compile_cache)
    compile_cache.configure(cache, min_compile_s=0.0)
    try:
        opts = fit_options(args)
        df = load_results(args)
        args.bootstrap = sized_resamples(len(df), args.bootstrap)
        curves = pd.read_csv(args.curves) if args.curves else None
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            res = fit_approaches(df, curves, n_bootstrap=args.bootstrap, seed=args.seed,
                                 final_points=args.final_points, **opts)
            extra, record = extra_fits(args, df, opts)
    except ValueError as err:
        print(f"lm-fit: error: {err}", file=sys.stderr)
        return 2
    out = args.out or Path(args.file.stem + "_fit")
    text = [f"lm-fit {args.file} ({len(df)} runs)", res.summary(), *extra]
    text += [f"Warning: {w.message}" for w in caught]
    print("\n".join(text))
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.txt").write_text("\n".join(text) + "\n")
    res.allocation_table().to_csv(out / "allocations.csv", index=False)
    record.update(fit_record(res, opts))
    (out / "fit.json").write_text(json.dumps(record, indent=1, default=_plain) + "\n")
    written = [out / "summary.txt", out / "allocations.csv", out / "fit.json"]
    if not args.no_plots:
        from lm.scaling.plots import write_plots
        written += write_plots(res, df, out)
    print(f"wrote {', '.join(str(p) for p in written)}")
    return 0


def extra_fits(args: argparse.Namespace, df: pd.DataFrame, opts: dict) -> tuple[list[str], dict]:
    """Kaplan, forecast and data-constrained fits asked for: (report lines, JSON record)."""
    lines, record = [], {}
    if args.kaplan:
        prepared = prepare_results(df)
        k = fit_kaplan(prepared["N"], prepared["D"], prepared["loss"])
        lines.append(f"Kaplan L(N, D): {k.law} (objective {k.objective:.6e})")
        singles = kaplan_fits(df, n_bootstrap=args.bootstrap, seed=args.seed)
        lines += [f"Kaplan {f.summary()}" for f in singles.values()]
        record["kaplan"] = {v: {n: vars(e) for n, e in f.estimates.items()} for v, f in singles.items()}
    if args.forecast:
        fc = forecast(df, n_bootstrap=min(args.bootstrap, 200), seed=args.seed, window=opts["window"],
                      methods=("grid", "vpnls") if opts["method"] == "grid" else ("vpnls",),
                      constraints=opts["constraints"])
        lines.append(fc.summary())
        record["forecast"] = fc.errors().to_dict("records")
        record["forecast_predictions"] = fc.predictions.to_dict("records")
    if args.data_constrained:
        if "U" not in df.columns:
            raise ValueError(f"--data-constrained needs a unique-tokens column {args.u_col!r} (set --u-col)")
        dc = fit_data_constrained_table(df, recipe=args.dc_recipe, delta=opts["constraints"].delta)
        lines.append(dc.summary())
        record["data_constrained"] = dict(recipe=dc.recipe, R_D=dc.law.R_D, R_N=dc.law.R_N, objective=dc.objective,
                                          n_runs=dc.n_runs, wide=dc.wide, base=vars(dc.law.base))
    return lines, record


def fit_record(res, opts: dict) -> dict:
    """What fit.json records: the choices made and every approach's estimates."""
    return {"method": opts["method"], "constraints": opts["constraints"].as_dict(), "window": opts["window"],
            "approaches": list(opts["approaches"]), "notes": list(res.notes),
            "failed": [dict(approach=a, reason=r) for a, r in res.failed],
            "estimates": {name: {k: vars(e) for k, e in est.items()} for name, est in res.estimates().items()},
            "isoflops": res.approach2.isoflops.to_dict("records") if res.approach2 is not None else None}


def _plain(x):
    return x.item() if isinstance(x, np.generic) else str(x)


if __name__ == "__main__":
    sys.exit(main())
