"""`lm-fit FILE`: fit scaling laws to a results table and print Chinchilla-style tables.

Examples:
    lm-fit sweeps/default                 # a sweep folder (or its results.jsonl)
    lm-fit delphi_optima_and_heldout.csv --table minima --c-col flops --loss-col c4_en_bpb \\
        --n-col params --d-col tokens --query "role == 'fit'" --predict 1e21,1e22,1e23
    lm-fit epoch_chinchilla_svg_extracted_data.csv --n-col "Model Size" --c-col "Training FLOP" \\
        --drop-highest-loss 5
    lm-fit open_athena_isoflops.csv --n-col params --d-col tokens \\
        --query "source == 'epochai_chinchilla'"

    lm-fit epoch_chinchilla_svg_extracted_data.csv ... --method vpnls --fix-E 1.69 --forecast
    lm-fit muennighoff2023_datablations_runs.csv --loss-col val_loss --u-col U_unique_tokens \\
        --run-col run_name --data-constrained --approaches 3 --tie-exponents

Tables: one row per run (N, D or C, loss) or one row per budget (C, loss[, N, D] of its optimum;
--table minima, or auto). Prints Approach 3's parameters with bootstrap intervals, the frontier law
L_opt(C) = E + K C^-gamma, each approach's exponents and the compute-optimal N and D at the data's
budgets (plus --budgets/--predict, extrapolated rows marked); a fit its data cannot identify is
printed as "unidentified: <reason>". With --forecast, --holdout-above C, --holdout K or --predict:
the walk-forward model choice (lm/scaling/walkforward.py) and forecast.csv. Writes summary.txt,
allocations.csv, fit.json, forecast.csv and the figures (PNG; --svg: SVG too) to --out. Bad flags: one
line, exit 2; exit 2 too when no approach can be fitted.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import pandas as pd

from lm.scaling.bootstrap import sized_resamples
from lm.scaling.datalimited import RECIPES, fit_data_constrained_table
from lm.scaling.fit import fit_kaplan
from lm.scaling.fitoptions import FitOptions, add_fit_arguments, fit_options
from lm.scaling.kaplan import kaplan_fits
from lm.scaling.pipeline import run_fit
from lm.scaling.results import prepare_results
from lm.scaling.tables import is_sweep, read_sweep


class _OneLineParser(argparse.ArgumentParser):
    """Bad flags: one line on stderr ("lm-fit: error: ..."), exit 2 (no usage dump)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see lm-fit --help)\n")


def add_input_arguments(p: argparse.ArgumentParser) -> None:
    """lm-fit's input options: the table, its columns and rows, extra fits, output."""
    p.add_argument("file", type=Path, help="CSV with one row per run (N, D or C, loss) or per budget (C, loss[, N, D]); "
                   "or a sweep folder / its results.jsonl")
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
    p.add_argument("--kaplan", action="store_true",
                   help="also fit Kaplan's L(N, D) and the single-variable L(N), L(D), L(C_min) with bootstrap")
    p.add_argument("--data-constrained", action="store_true",
                   help="fit Muennighoff et al.'s data-constrained law (needs a U column: --u-col)")
    p.add_argument("--u-col", default="U", help="column of unique tokens for --data-constrained (default U)")
    p.add_argument("--dc-recipe", default="auto", choices=RECIPES,
                   help="--data-constrained recipe: datablations (Muennighoff et al.'s runs, base law and starts; "
                        "needs --run-col), single-epoch (base law fitted on this table's single-epoch runs), or "
                        "auto (datablations on their own table, else single-epoch; default)")
    p.add_argument("--out", type=Path, help="output folder (default ./<FILE's stem>_fit)")
    p.add_argument("--no-plots", action="store_true")
    p.add_argument("--svg", action="store_true", help="write each figure as SVG too (default: PNG only)")
    p.add_argument("--compile-cache", default="user",
                   help="persistent XLA compilation cache folder: user (default: $LM_COMPILE_CACHE, else "
                        "~/.cache/lm/xla, shared with sweeps), a folder, or none: a second lm-fit skips "
                        "compiling the fits")


def build_parser() -> argparse.ArgumentParser:
    p = _OneLineParser(prog="lm-fit", description=__doc__.split("\n\n")[0],
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_input_arguments(p)
    add_fit_arguments(p)
    return p


def load_results(args: argparse.Namespace) -> pd.DataFrame:
    """Read the CSV and map its columns to N, D, C, loss, budget, run."""
    if not args.file.exists():
        raise ValueError(f"no such file: {args.file}")
    raw = read_sweep(args.file) if is_sweep(args.file) else pd.read_csv(args.file)
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
    if args.loss_col not in raw.columns or not ({args.n_col, args.c_col, args.budget_col} & set(raw.columns)):
        raise ValueError(f"{args.file} needs a loss column {args.loss_col!r} and N ({args.n_col!r}) or C "
                         f"({args.c_col!r}); columns: {list(raw.columns)} (set --n-col/--c-col/--loss-col)")
    df = raw[[c for c in names if c in raw.columns]].rename(columns=names)
    if args.d_from_c:
        if "C" not in df.columns:
            raise ValueError(f"--d-from-c needs a FLOPs column {args.c_col!r} (set --c-col)")
        df = df.drop(columns=["D"], errors="ignore")
    if args.drop_highest_loss:
        df = df.drop(index=df["loss"].nlargest(args.drop_highest_loss).index)
    return df.reset_index(drop=True)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from lm import compile_cache
    cache = {"user": compile_cache.user_dir(), "none": None}.get(args.compile_cache, args.compile_cache)
    compile_cache.configure(cache, min_compile_s=0.0)
    try:
        opts = fit_options(args)
        df = load_results(args)
        opts = dataclasses.replace(opts, bootstrap=sized_resamples(len(df), opts.bootstrap))
        args.bootstrap = opts.bootstrap               # the Kaplan fits' too
        curves = pd.read_csv(args.curves) if args.curves else None
    except ValueError as err:
        print(f"lm-fit: error: {err}", file=sys.stderr)
        return 2
    out = args.out or Path((args.file.name if args.file.is_dir() else args.file.stem) + "_fit")
    title = f"lm-fit {args.file} ({len(df)} rows)"
    return run_fit(df, opts, out, title=title, curves=curves, final_points=args.final_points,
                   plots=not args.no_plots, formats=("png", "svg") if args.svg else ("png",),
                   extra=lambda res: extra_fits(args, df, opts))


def extra_fits(args: argparse.Namespace, df: pd.DataFrame, opts: FitOptions) -> tuple[list[str], dict]:
    """Kaplan and data-constrained fits asked for: (report lines, JSON record)."""
    lines, record = [], {}
    if args.kaplan:
        prepared = prepare_results(df)
        k = fit_kaplan(prepared["N"], prepared["D"], prepared["loss"])
        lines.append(f"Kaplan L(N, D): {k.law} (objective {k.objective:.6e})")
        singles = kaplan_fits(df, n_bootstrap=args.bootstrap, seed=args.seed)
        lines += [f"Kaplan {f.summary()}" for f in singles.values()]
        record["kaplan"] = {v: {n: vars(e) for n, e in f.estimates.items()} for v, f in singles.items()}
    if args.data_constrained:
        if "U" not in df.columns:
            raise ValueError(f"--data-constrained needs a unique-tokens column {args.u_col!r} (set --u-col)")
        dc = fit_data_constrained_table(df, recipe=args.dc_recipe, delta=opts.constraints.delta)
        lines.append(dc.summary())
        record["data_constrained"] = dict(recipe=dc.recipe, R_D=dc.law.R_D, R_N=dc.law.R_N, objective=dc.objective,
                                          n_runs=dc.n_runs, wide=dc.wide, base=vars(dc.law.base))
    return lines, record


if __name__ == "__main__":
    sys.exit(main())
