"""Walk-forward forecasts on the public scaling tables: the default choice against the naive baseline.

    python -m experiments.bench.forecast_public [--data ../shared/data] [--out forecast_public.csv]
                                                [--only SUBSTRING] [--max-splits 3]

For every public table in ../shared/data with >= 5 budgets (with an observed optimum) spanning
>= 10x: hold out its largest budgets (2 when it has >= 7, else 1), run the walk-forward model
choice (lm.scaling.walkforward.choose, default candidates) on the rest, and forecast the held-out
budgets' optimal losses with the chosen law and with the naive baseline (the frontier law by
least squares). Prints and writes one row per table: shape, budgets and span, held-out budgets,
the walk-forward's splits, the choice, both mean |relative errors| and how many held-out optima
each one's 90 % interval covers (the walk-forward-calibrated intervals, lm.scaling.calibrate).
Marin's Delphi minima are scored on their own held-out 1e21-1e23 runs. Deterministic (no random
draws).
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from lm.scaling.aim import forecast_rows, holdout
from lm.scaling.candidates import NAIVE
from lm.scaling.walkforward import Data, choose, split_data

PORIAN_KEYS = ["source_file", "dataset", "hparams", "warmup", "decay", "param_count", "loss_split"]


def tables(root: Path):
    """(name, table, held-out Data or None) for every public table."""
    delphi = pd.read_csv(root / "forecast/delphi/delphi_optima_and_heldout.csv")
    fit = delphi[delphi["role"] == "fit"]
    held = delphi[(delphi["role"] == "heldout") & (delphi["seed_tag"] == "seed0_canonical")]
    obs = pd.DataFrame(dict(budget=held["flops"].to_numpy(float), loss=held["c4_en_bpb"].to_numpy(float), n_used=1))
    yield ("delphi (Marin, c4_en bpb; held out: its 1e21-1e23 runs)",
           pd.DataFrame(dict(C=fit["flops"], loss=fit["c4_en_bpb"], N=fit["params"], D=fit["tokens"])),
           Data("minima", None, pd.DataFrame(columns=["budget", "loss", "N", "D", "n_used"]), obs))
    raw = pd.read_csv(root / "epoch_chinchilla_svg_extracted_data.csv")
    yield "epoch chinchilla (Fig. 4, 245 pts)", pd.DataFrame(dict(N=raw["Model Size"], C=raw["Training FLOP"],
                                                                  loss=raw["loss"])), None
    mis = pd.read_csv(root / "forecast/misfitting/scaling_results_last_ckpt_only.csv")
    best = mis.groupby(["N", "D"], as_index=False)["loss"].min()
    yield "misfitting (C4, best LR per (N, D))", best, None
    mu = pd.read_csv(root / "muennighoff2023_datablations_runs.csv")
    yield "muennighoff datablations (val loss)", pd.DataFrame(dict(N=mu["N"], D=mu["D"], loss=mu["val_loss"])), None
    opt = pd.read_csv(root / "porian2024_isoflop_optima.csv")
    for key, g in opt.groupby(PORIAN_KEYS, dropna=False):
        g = g.dropna(subset=["loss_opt"])  # a few budgets have no minimum in the source
        yield (f"porian optima {'/'.join(map(str, key[1:]))}",
               pd.DataFrame(dict(C=g["flops"], loss=g["loss_opt"], N=g["N_opt"], D=g["D_opt"])), None)
    oa = pd.read_csv(root / "open_athena_isoflops.csv")
    for key, g in oa.groupby("experiment"):
        yield f"open-athena {key}", pd.DataFrame(dict(N=g["params"], D=g["tokens"], budget=g["budget"],
                                                      loss=g["loss"])), None
    pts = pd.read_csv(root / "porian2024_isoflop_points.csv")
    for key, g in pts.groupby(PORIAN_KEYS, dropna=False):
        yield (f"porian points {'/'.join(map(str, key[1:]))}",
               pd.DataFrame(dict(N=g["N"], D=g["D"], budget=g["flops"], loss=g["loss"])), None)


def evaluate(name: str, table: pd.DataFrame, held_out: Data | None, max_splits: int) -> dict:
    data = split_data(table)
    nb = len(data.observed)
    b = data.observed["budget"].to_numpy(float)
    row = dict(table=name, shape=data.shape, rows=len(table), budgets=nb,
               span=float(b.max() / b.min()) if nb else np.nan)
    if held_out is None and (nb < 5 or row["span"] < 10):
        return dict(row, note="skipped: < 5 budgets with an observed optimum or span < 10x")
    if held_out is None:
        train, held = holdout(data, k=2 if nb >= 7 else 1)
    else:
        train, held = table, held_out
    t0 = time.process_time()
    ch = choose(train, shape=data.shape, max_splits=max_splits)
    rows = forecast_rows(ch, held)
    opt = rows[rows["kind"] == "optimum"].assign(err=lambda r: (r["predicted"] / r["observed"] - 1).abs(),
                                                 cov=lambda r: (r["lo"] <= r["observed"]) & (r["observed"] <= r["hi"]))
    err, cov = opt.groupby("approach")["err"].mean(), opt.groupby("approach")["cov"].sum()
    return dict(row, held_out=", ".join(f"{c:.3g}" for c in held.observed["budget"]),
                splits=", ".join(f"{c:.3g}" for c in ch.origins), chosen=ch.chosen,
                default_error=err.get(ch.chosen, np.nan), naive_error=err.get(NAIVE.name, np.nan),
                default_covered=int(cov.get(ch.chosen, 0)), naive_covered=int(cov.get(NAIVE.name, 0)),
                n_held=len(held.observed), cpu_s=time.process_time() - t0, note="")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=Path("../shared/data"))
    p.add_argument("--out", type=Path, default=Path("forecast_public.csv"))
    p.add_argument("--only", default="", help="only tables whose name contains this")
    p.add_argument("--max-splits", type=int, default=3)
    args = p.parse_args(argv)
    warnings.simplefilter("ignore")
    done = []
    for name, table, held in tables(args.data):
        if args.only not in name:
            continue
        try:
            r = evaluate(name, table, held, args.max_splits)
        except Exception as err:  # noqa: BLE001 - one table failing never hides the others
            r = dict(table=name, note=f"failed: {type(err).__name__}: {err}")
        done.append(r)
        print(" | ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in r.items()), flush=True)
        pd.DataFrame(done).to_csv(args.out, index=False)


if __name__ == "__main__":
    main()
