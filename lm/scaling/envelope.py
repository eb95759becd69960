"""Chinchilla Approach 1: the lower envelope of loss over FLOPs -> N_opt(C), D_opt(C).

Every run's loss curve is interpolated (linearly in log C) on `n_grid` log-spaced FLOP values;
at each value the run with the lowest loss is on the envelope, and its (N, D = C / f(N)) is a
compute-optimal point (Hoffmann et al. 2022, sec. 3.1); points held by the smallest or largest
model are censored and left out by default. Power laws N_opt = G_N C^a and
D_opt = G_D C^b are fitted by least squares in log-log; the bootstrap resamples runs.
Without curves Approach 1 is undefined and raises, unless final_points=True: then the Pareto
frontier of runs' final (C, loss) points stands in (noted in `source`). On an IsoFLOP sweep
that frontier is a poor proxy (a run's final point is only one point of its curve).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from lm.scaling.bootstrap import PowerLawFits, power_law_fits
from lm.scaling.laws import FlopsPerToken
from lm.scaling.results import flops_per_token_at, curves_from_column, prepare_curves, prepare_results

CHINCHILLA_TABLE3_BUDGETS = (1.92e19, 1.21e20, 1.23e22, 5.76e23, 3.85e24, 9.90e24, 3.43e25,
                             1.27e26, 1.30e28)
"""FLOP budgets of Hoffmann et al. 2022, Table 3 (400M to 10T parameters)."""


@dataclass(frozen=True)
class Approach1:
    """Lower envelope of loss over FLOPs -> N_opt(C), D_opt(C)."""

    envelope: pd.DataFrame = field(repr=False)
    """One row per FLOP value on the envelope: C, N, D, loss, run."""
    fits: PowerLawFits
    source: str
    """"curves" or "final points (no curves given)"."""

    def summary(self) -> str:
        return f"Approach 1 ({self.source}, {len(self.envelope)} envelope points): {self.fits.summary()}"


def _envelope_matrix(cv: pd.DataFrame, n_grid: int):
    """Loss of each run interpolated (linearly in log C) on a log-spaced FLOP grid.

    Returns (grid [G], runs [R], N [R], loss [R, G]) with +inf where a run's curve does not
    reach a grid value.
    """
    groups = [(run, g.sort_values("C")) for run, g in cv.groupby("run", sort=False) if len(g) >= 2]
    if not groups:
        raise ValueError("Approach 1 needs curves with at least 2 points per run")
    lc_all = np.log(cv["C"].to_numpy())
    grid = np.linspace(lc_all.min(), lc_all.max(), n_grid)
    M = np.full((len(groups), n_grid), np.inf)
    for i, (_, g) in enumerate(groups):
        lc, loss = np.log(g["C"].to_numpy()), g["loss"].to_numpy()
        inside = (grid >= lc[0]) & (grid <= lc[-1])
        M[i, inside] = np.interp(grid[inside], lc, loss)
    return np.exp(grid), [r for r, _ in groups], np.array([g["N"].iloc[0] for _, g in groups]), M


def _pareto(C: np.ndarray, loss: np.ndarray, members: np.ndarray) -> np.ndarray:
    """Indices (within members) of the frontier: each has lower loss than all cheaper runs."""
    idx = members[np.argsort(C[members], kind="stable")]
    running = np.minimum.accumulate(loss[idx])
    new_min = np.concatenate([[True], loss[idx][1:] < running[:-1]])
    return idx[new_min]


def approach1(results: pd.DataFrame, curves: pd.DataFrame | None = None, *,
              flops_per_token: FlopsPerToken | None = None, n_grid: int = 1500,
              n_bootstrap: int = 1000, seed: int = 0, budgets=CHINCHILLA_TABLE3_BUDGETS,
              level: float = 0.95, final_points: bool = False,
              drop_extremes: bool = True) -> Approach1:
    """Chinchilla Approach 1 (see the module docstring); bootstrap resamples runs.

    curves: long frame (run, tokens, loss[, N]) or None to use a `curve` column of results.
    drop_extremes: leave out envelope points held by the smallest or largest model. There
    the true optimum may lie beyond the sizes trained (at low FLOPs the smallest model wins
    only because nothing smaller ran), which flattens N_opt(C) - the same censoring that an
    off-centre IsoFLOP causes in Approach 2.
    """
    df = prepare_results(results, flops_per_token)
    if curves is None and "curve" in df.columns:
        curves = curves_from_column(df)
    rng = np.random.default_rng(seed)
    if curves is not None:
        cv = prepare_curves(curves, df, flops_per_token)
        env, samples = _curve_envelope(cv, flops_per_token, n_grid, n_bootstrap, rng, drop_extremes)
        source = "curves"
    elif not final_points:
        raise ValueError("Approach 1 needs per-run loss curves (a curves frame with run, tokens, loss, "
                         "or a 'curve' column); pass final_points=True to use the frontier of final losses")
    else:
        env, samples = _final_point_envelope(df, n_bootstrap, rng)
        source = "final points (no curves given)"
    if env["C"].nunique() < 2:
        raise ValueError("Approach 1's envelope has fewer than 2 distinct FLOP values"
                         f"{' once points held by the smallest or largest model are left out' if drop_extremes else ''}; "
                         "give curves of more sizes spanning several budgets")
    fits = power_law_fits(env["C"].to_numpy(), env["N"].to_numpy(), env["D"].to_numpy(),
                           samples, budgets, level)
    return Approach1(envelope=env.reset_index(drop=True), fits=fits, source=source)


def _curve_envelope(cv: pd.DataFrame, flops_per_token, n_grid: int, n_bootstrap: int,
                    rng: np.random.Generator, drop_extremes: bool) -> tuple[pd.DataFrame, list]:
    """The envelope of the curves (C, N, D, loss, run per grid FLOP value) and its bootstrap samples
    [(C, N, D)] over resampled runs."""
    grid, runs, N_run, M = _envelope_matrix(cv, n_grid)

    def envelope(mask):
        Mm = np.where(mask[:, None], M, np.inf)
        best = np.argmin(Mm, axis=0)
        ok = np.isfinite(Mm[best, np.arange(len(grid))])
        if drop_extremes:
            sizes = N_run[mask]
            ok &= (N_run[best] > sizes.min()) & (N_run[best] < sizes.max())
        return best[ok], ok

    best, ok = envelope(np.ones(len(runs), bool))
    C, N = grid[ok], N_run[best]
    env = pd.DataFrame({"C": C, "N": N, "D": C / flops_per_token_at(flops_per_token, N),
                        "loss": M[best, np.flatnonzero(ok)], "run": [runs[i] for i in best]})
    samples = []
    for _ in range(n_bootstrap):
        b, okb = envelope(rng.multinomial(len(runs), np.full(len(runs), 1 / len(runs))) > 0)
        Cb, Nb = grid[okb], N_run[b]
        samples.append((Cb, Nb, Cb / flops_per_token_at(flops_per_token, Nb)))
    return env, samples


def _final_point_envelope(df: pd.DataFrame, n_bootstrap: int, rng: np.random.Generator) -> tuple[pd.DataFrame, list]:
    """The Pareto frontier of the runs' final (C, loss) and its bootstrap samples [(C, N, D)]."""
    C_all, L_all = df["C"].to_numpy(), df["loss"].to_numpy()
    front = _pareto(C_all, L_all, np.arange(len(df)))
    env = df.iloc[front][["C", "N", "D", "loss"]].assign(
        run=df["run"].to_numpy()[front] if "run" in df.columns else df.index[front])
    samples = []
    for _ in range(n_bootstrap):
        members = np.flatnonzero(rng.multinomial(len(df), np.full(len(df), 1 / len(df))) > 0)
        f = _pareto(C_all, L_all, members)
        samples.append((C_all[f], df["N"].to_numpy()[f], df["D"].to_numpy()[f]))
    return env, samples
