"""`lm-fit FILE`: fit scaling laws to a results CSV and print Chinchilla-style tables.

Examples:
    lm-fit sweeps/default/results.csv
    lm-fit epoch_chinchilla_svg_extracted_data.csv --n-col "Model Size" --c-col "Training FLOP" \\
        --drop-highest-loss 5
    lm-fit open_athena_isoflops.csv --n-col params --d-col tokens \\
        --query "source == 'epochai_chinchilla'"

Prints Approach 3's parameters with bootstrap intervals, each approach's exponents, and the
compute-optimal N and D for a list of budgets (Chinchilla's Table 3 by default); writes
summary.txt, allocations.csv and the figures (PNG and SVG) to --out.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import pandas as pd

from lm.scaling.approaches import CHINCHILLA_TABLE3_BUDGETS, fit_approaches
from lm.scaling.fit import fit_kaplan


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lm-fit", description=__doc__.split("\n\n")[0],
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
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples (default 1000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--kaplan", action="store_true", help="also fit Kaplan's L(N, D)")
    p.add_argument("--out", type=Path, help="output folder (default ./<FILE's stem>_fit)")
    p.add_argument("--no-plots", action="store_true")
    return p


def load_results(args: argparse.Namespace) -> pd.DataFrame:
    """Read the CSV and map its columns to N, D, C, loss, budget, run."""
    if not args.file.exists():
        raise ValueError(f"no such file: {args.file}")
    raw = pd.read_csv(args.file)
    if args.query:
        raw = raw.query(args.query)
        if raw.empty:
            raise ValueError(f"--query {args.query!r} selects no rows")
    names = {args.n_col: "N", args.d_col: "D", args.c_col: "C", args.loss_col: "loss",
             args.budget_col: "budget", args.run_col: "run"}
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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        df = load_results(args)
        curves = pd.read_csv(args.curves) if args.curves else None
        budgets = [float(x) for x in args.budgets.split(",") if x.strip()]
        approaches = tuple(int(x) for x in args.approaches.split(",") if x.strip())
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            res = fit_approaches(df, curves, budgets=budgets, n_bootstrap=args.bootstrap, seed=args.seed,
                                 approaches=approaches, final_points=args.final_points)
    except ValueError as err:
        print(f"lm-fit: error: {err}", file=sys.stderr)
        return 2
    out = args.out or Path(args.file.stem + "_fit")
    text = [f"lm-fit {args.file} ({len(df)} runs)", res.summary()]
    if args.kaplan:
        from lm.scaling.results import prepare_results
        prepared = prepare_results(df)
        k = fit_kaplan(prepared["N"], prepared["D"], prepared["loss"])
        text.append(f"Kaplan L(N, D): {k.law} (objective {k.objective:.6e})")
    text += [f"Warning: {w.message}" for w in caught]
    print("\n".join(text))
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.txt").write_text("\n".join(text) + "\n")
    res.allocation_table().to_csv(out / "allocations.csv", index=False)
    written = [out / "summary.txt", out / "allocations.csv"]
    if not args.no_plots:
        from lm.scaling.plots import write_plots
        written += write_plots(res, df, out)
    print(f"wrote {', '.join(str(p) for p in written)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
