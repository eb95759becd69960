"""The fitting and forecast options, one parser for `lm-fit` and `lm-sweep fit`.

    add_fit_arguments(parser)        # --table, --approaches, --method, ..., --predict
    opts = fit_options(args)         # FitOptions, validated: one-line ValueError per bad value

Each bad value is refused where it enters with the flag and the fix in the message.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass

import numpy as np

from lm.scaling.approaches import METHODS
from lm.scaling.constraints import FitConstraints
from lm.scaling.isoflop import DEFAULT_WINDOW, check_window
from lm.scaling.results import SHAPES

APPROACH_CHOICES = (1, 2, 3, "frontier")


def add_fit_arguments(p: argparse.ArgumentParser) -> None:
    """Every fitting and forecast option (shared by lm-fit and lm-sweep fit)."""
    p.add_argument("--table", default="auto", help="table shape: runs (one row per run), minima (one row per budget: "
                   "C, loss[, N, D] of its optimum) or auto (minima when every budget has one row; default)")
    p.add_argument("--approaches", default="1,2,3,frontier",
                   help="which approaches to run: 1, 2, 3, frontier (the law L_opt(C) = E + K C^-gamma on the "
                        "per-budget minima); default all")
    p.add_argument("--method", default="grid", help="Approach 3's fitter: grid (L-BFGS from Chinchilla's 4,500 "
                   "starts; default) or vpnls (variable projection)")
    p.add_argument("--fix-E", type=float, metavar="E", help="hold the irreducible loss E fixed (nats/token)")
    p.add_argument("--tie-exponents", action="store_true", help="fit one exponent alpha = beta")
    p.add_argument("--huber-delta", type=float, default=1e-3, help="Approach 3's Huber threshold (default 1e-3)")
    p.add_argument("--loss-space", default="log", help="residuals in log (default) or linear space")
    p.add_argument("--window", default="auto", help="Approach 2's parabola window: auto (default: sizes within x4 "
                   "of each minimum, at least 5), k nearest sizes (e.g. 5), xF for sizes within a factor F (e.g. x4), or all")
    p.add_argument("--bootstrap", type=int, default=None, help="bootstrap resamples (0: no intervals; default: 1000 "
                   "for tables of >= 100 rows, else 10 per row, at least 200)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--budgets", default="", help="comma-separated FLOP budgets added to the allocation table "
                   "(which lists the data's own budgets; rows beyond them are marked extrapolated)")
    p.add_argument("--forecast", action="store_true",
                   help="walk-forward model choice: fit on the smaller budgets, predict the larger, print the table")
    p.add_argument("--holdout-above", type=float, metavar="C",
                   help="fit below C FLOPs, forecast and score every budget and run at or above it (forecast.csv)")
    p.add_argument("--holdout", type=int, metavar="K", help="hold out the largest K budgets (as --holdout-above)")
    p.add_argument("--predict", default="", metavar="C1,C2",
                   help="forecast the optimal loss, N and D at these budgets (forecast.csv)")
    p.add_argument("--max-splits", default="6", help="walk-forward splits kept (evenly spaced; default 6) or all")


@dataclass(frozen=True)
class FitOptions:
    """Validated fitting and forecast choices (recorded in fit.json)."""

    table: str = "auto"
    approaches: tuple = APPROACH_CHOICES
    method: str = "grid"
    constraints: FitConstraints = FitConstraints()
    window: int | float | str | None = DEFAULT_WINDOW
    bootstrap: int | None = None
    """None: sized to the table (lm.scaling.bootstrap.sized_resamples)."""
    seed: int = 0
    budgets: tuple[float, ...] = ()
    forecast: bool = False
    holdout_above: float | None = None
    holdout: int | None = None
    predict: tuple[float, ...] = ()
    max_splits: int | None = 6

    @property
    def forecasting(self) -> bool:
        """Whether the walk-forward runs (any forecast option given)."""
        return self.forecast or self.holdout_above is not None or self.holdout is not None or bool(self.predict)

    def as_dict(self) -> dict:
        d = asdict(self)
        d["constraints"] = self.constraints.as_dict()
        return d


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


def _approach(x: str):
    return "frontier" if x == "frontier" else int(x)


def fit_options(args: argparse.Namespace) -> FitOptions:
    """Validated FitOptions from parsed arguments (add_fit_arguments); ValueError naming the flag."""
    if args.method not in METHODS:
        raise ValueError(f"--method {args.method!r}: choose from {', '.join(METHODS)}")
    if args.table not in SHAPES:
        raise ValueError(f"--table {args.table!r}: choose from {', '.join(SHAPES)}")
    if args.bootstrap is not None and (args.bootstrap == 1 or args.bootstrap < 0):
        raise ValueError(f"--bootstrap {args.bootstrap}: use 0 (no intervals) or >= 2 (1000 for published intervals)")
    if args.holdout is not None and args.holdout < 1:
        raise ValueError(f"--holdout {args.holdout}: hold out K >= 1 of the largest budgets")
    if args.holdout is not None and args.holdout_above is not None:
        raise ValueError("--holdout and --holdout-above both given: choose one cut")
    if args.holdout_above is not None and not (np.isfinite(args.holdout_above) and args.holdout_above > 0):
        raise ValueError(f"--holdout-above {args.holdout_above}: give a positive FLOP budget, e.g. 1e21")
    splits = args.max_splits.strip().lower()
    if splits != "all" and not (splits.isdigit() and int(splits) >= 1):
        raise ValueError(f"--max-splits {args.max_splits!r}: give a count >= 1 or all")
    constraints = FitConstraints(fix_E=args.fix_E, tie_exponents=args.tie_exponents, delta=args.huber_delta,
                                 space=args.loss_space)
    items = [x.strip() for x in args.approaches.split(",") if x.strip()]
    bad = [x for x in items if x not in ("1", "2", "3", "frontier")]
    if bad or not items:
        raise ValueError(f"--approaches: unknown value(s) {bad or [args.approaches]}; choose from 1, 2, 3, frontier")
    approaches = tuple(_approach(x) for x in items)
    return FitOptions(table=args.table, approaches=approaches, method=args.method, constraints=constraints,
                      window=parse_window(args.window), bootstrap=args.bootstrap, seed=args.seed,
                      budgets=tuple(parse_list(args.budgets, "--budgets", float)) if args.budgets.strip() else (),
                      forecast=args.forecast, holdout_above=args.holdout_above, holdout=args.holdout,
                      predict=tuple(parse_list(args.predict, "--predict", float)) if args.predict.strip() else (),
                      max_splits=None if splits == "all" else int(splits))
