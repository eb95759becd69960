"""Chinchilla Approach 2: IsoFLOP parabolas -> minima -> N_opt(C), D_opt(C).

Per budget, loss is fitted by a parabola in ln N near the budget's minimum; its vertex is N_opt
(Hoffmann et al. 2022, sec. 3.2). Power laws across budgets by least squares in log-log.

Near the minimum: far from it the loss is not a parabola in ln N (the A/N^alpha and B/D^beta
terms are exponentials in ln N), so a parabola through every point of a wide IsoFLOP grid moves
its vertex and biases the exponent; too few points near it on a narrow, noisy grid leave the
curvature to the noise. The default window, "auto", follows each budget's grid: the sizes within a
factor 4 of the size with the lowest loss, widened to the 5 nearest while they lie within a factor
8, never fewer than 3 (a narrow grid keeps every size, a dense wide one those within x4, a sparse
one its 3-5 nearest). `window = 5` (an int k >= 3) uses the k nearest sizes; `window = 4.0` (a
float > 1) the sizes within that factor; `window = None` every point (the classic fit). Each
budget reports the sizes used and whether the vertex lies inside them.

Budgets weighted by their minimum's precision (`weighted=True`, the default): the power laws
N_opt(C), D_opt(C) are weighted least squares across budgets. A budget's precision is
1 / var(ln N_opt), the delta-method variance of its parabola's vertex for unit noise
(g' (X'X)^-1 g, g the vertex's gradient in the parabola's coefficients; the noise level, shared
by the budgets, cancels); its weight is min(precision, PRECISION_CAP x the median budget's). So
budgets count equally unless a minimum is more than 10x less precise than the median's, as a
flat or off-centre parabola whose vertex the noise throws far: that one counts in proportion.
On synthetic grids of +-2x..+-32x with 0.5 % noise the default finds a within 0.006 of the truth
on average (10 seeds), where the old default (5 nearest sizes, equal weights) is off by 0.02 on
+-2x grids (README; experiments/bench/window.py, also on the public grids).

D_opt: when the table has its own D column, D_opt is read from the data at N_opt (a line of
ln D on ln N through the budget's points used, evaluated at the vertex), so b is estimated, not
forced to 1 - a; only without a D column is D_opt = C / f(N_opt).

Bootstrap: each budget's points are resampled and each resample is windowed the way the full
fit was (around its own lowest loss), all resamples at once as weighted parabolas. A budget's resample whose parabola is not convex
or whose vertex falls outside the budget's sampled sizes is rejected: counted, and left out of
that bootstrap resample's power laws (a resample left with < 2 budgets gives no sample);
intervals come from the rest, and a fit with more than 20 % rejected is flagged unreliable.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from lm.scaling.bootstrap import PowerLawFits, power_law_fits
from lm.scaling.envelope import CHINCHILLA_TABLE3_BUDGETS
from lm.scaling.laws import FlopsPerToken
from lm.scaling.results import flops_per_token_at, budgets_of, prepare_results

UNRELIABLE_REJECTED = 0.2
"""Fraction of rejected budget resamples above which Approach 2 is flagged unreliable."""
DEFAULT_WINDOW = "auto"
"""Approach 2's default window: the sizes within AUTO_FACTOR of the minimum, widened to the
AUTO_MIN_SIZES nearest while within AUTO_MAX_FACTOR (kept_sizes)."""
AUTO_FACTOR = 4.0
AUTO_MIN_SIZES = 5
AUTO_MAX_FACTOR = 8.0
PRECISION_CAP = 0.1
"""A budget's weight is min(its vertex precision, PRECISION_CAP x the median budget's): equal
weights except for budgets whose minimum is more than 1 / PRECISION_CAP times less precise."""


@dataclass(frozen=True)
class Approach2:
    """IsoFLOP parabolas -> minima -> N_opt(C), D_opt(C)."""

    isoflops: pd.DataFrame = field(repr=False)
    """One row per budget: budget, n_points (all), n_used (in the window), p0, p1, p2
    (loss = p0 + p1 u + p2 u^2 with u = ln N - x0), x0, N_opt, D_opt, loss_opt, N_min, N_max
    (sizes used), inside (vertex within them), N_used (the sizes used), weight (the budget's share
    of the power laws' weights, summing to 1), rejected (bootstrap resamples rejected at this budget)."""
    points: pd.DataFrame = field(repr=False)
    """The runs, with their budget label and `used` (inside their budget's window)."""
    fits: PowerLawFits
    skipped: tuple[str, ...]
    """Budgets left out, with the reason."""
    window: int | float | str | None = DEFAULT_WINDOW
    """The window asked for ("auto", k nearest sizes, a factor, or None = all points)."""
    weighted: bool = True
    """Power laws weighted by each budget's vertex precision (else equal weights)."""
    d_source: str = "C / f(N_opt)"
    """Where D_opt came from: "data (ln D vs ln N at N_opt)" or "C / f(N_opt)"."""
    n_rejected: int = 0
    """Budget resamples rejected (parabola not convex or vertex outside the budget's sizes)."""
    n_resamples: int = 0
    """Budget resamples drawn: bootstrap resamples x budgets."""
    boot_loss: np.ndarray | None = field(default=None, repr=False)
    """[R, budgets] each resample's vertex loss (nan where rejected)."""

    @property
    def rejected_fraction(self) -> float:
        return self.n_rejected / self.n_resamples if self.n_resamples else 0.0

    @property
    def unreliable(self) -> bool:
        """More than 20 % of the bootstrap resamples were rejected."""
        return self.rejected_fraction > UNRELIABLE_REJECTED

    def summary(self) -> str:
        off = int((~self.isoflops["inside"]).sum())
        win = describe_window(self.window)
        weights = "budgets weighted by their minimum's precision" if self.weighted else "budgets weighted equally"
        flag = " UNRELIABLE (over 20 % rejected)" if self.unreliable else ""
        return (f"Approach 2 ({len(self.isoflops)} budgets, parabolas through {win} of the minimum, "
                f"{off} minima outside the sizes used, {len(self.skipped)} skipped, {weights}; D_opt from {self.d_source}; "
                f"bootstrap: {self.n_rejected} of {self.n_resamples} budget resamples rejected{flag}): {self.fits.summary()}")


    def budget_lines(self) -> list[str]:
        """Per budget: the vertex, the sizes the parabola used, whether the vertex lies inside them."""
        lines = ["IsoFLOP minima (Approach 2 parabolas):",
                 f"  {'C':>8} {'N_opt':>9} {'D_opt':>9} {'D/N':>8} {'loss':>7} {'weight':>6}  sizes used (points used/all)  rejected"]
        for r in self.isoflops.itertuples():
            lines.append(f"  {r.budget:8.3g} {r.N_opt:9.3g} {r.D_opt:9.3g} {fmt_ratio(r.D_opt / r.N_opt):>8} {r.loss_opt:7.4f} "
                         f"{100 * r.weight:5.1f}%  "
                         f"[{r.N_min:.3g}, {r.N_max:.3g}] ({r.n_used}/{r.n_points})"
                         f"{'' if r.inside else ' OUTSIDE'}  {r.rejected}")
        return lines


def weighted_lstsq(X, y, w):
    """Weighted least squares y ~ X p. X: [n, k]; y: [n]; w: [..., n] -> p [..., k] (nan if singular)."""
    XtW = X.T * np.asarray(w, float)[..., None, :]  # [..., k, n]
    A, rhs = XtW @ X, XtW @ y  # [..., k, k], [..., k]
    k = X.shape[1]
    scale = np.abs(A).max(axis=(-1, -2))
    ok = np.abs(np.linalg.det(A)) > 1e-10 * scale ** k
    p = np.linalg.solve(np.where(ok[..., None, None], A, np.eye(k)), rhs[..., None])[..., 0]
    return np.where(ok[..., None], p, np.nan)


def fit_parabola(u, y, w):
    """Weighted least squares loss = p0 + p1 u + p2 u^2. u, y: [n]; w: [..., n] -> p [..., 3].

    Rows whose normal equations are singular (fewer than 3 distinct sizes weighted) get nan.
    """
    return weighted_lstsq(np.stack([np.ones_like(u), u, u * u], axis=1), y, w)


def parabola_vertex(p, x0):
    """Minimum (x*, loss*) of each parabola; nan where not convex."""
    p0, p1, p2 = np.moveaxis(np.asarray(p, float), -1, 0)
    with np.errstate(all="ignore"):
        u = np.where(p2 > 0, -p1 / (2 * p2), np.nan)
    return x0 + u, p0 + p1 * u + p2 * u * u


def fmt_ratio(x: float) -> str:
    """A ratio such as D/N for a table: 3 significant digits, in exponent form beyond 1e5 or below 1e-2."""
    return f"{x:.3g}" if np.isfinite(x) and 1e-2 <= abs(x) < 1e5 else f"{x:.2e}"


def describe_window(window) -> str:
    """The window in words, for summaries."""
    if window is None:
        return "all points"
    if isinstance(window, str):
        return f"auto window (sizes within x{AUTO_FACTOR:g}, up to {AUTO_MIN_SIZES} within x{AUTO_MAX_FACTOR:g})"
    if isinstance(window, (int, np.integer)):
        return f"{window} nearest sizes"
    return f"sizes within x{window:g}"


def check_window(window) -> None:
    """window: "auto", None, an int k >= 3 (nearest sizes) or a float factor > 1."""
    if window is None or (isinstance(window, str) and window == "auto"):
        return
    if isinstance(window, (bool, np.bool_)) or not isinstance(window, (int, float, np.integer, np.floating)):
        raise ValueError(f"window={window!r}: use 'auto' (the default), an int k >= 3 (the k sizes nearest the "
                         "minimum), a float factor > 1 (sizes within that factor of it) or None (all points)")
    if isinstance(window, (int, np.integer)) and window < 3:
        raise ValueError(f"window={window}: a parabola needs at least 3 sizes; use window >= 3 or None")
    if isinstance(window, (float, np.floating)) and not (np.isfinite(window) and window > 1):
        raise ValueError(f"window={window}: a factor window must be > 1 (e.g. 4.0), or pass an int k or None")


def kept_sizes(dist, window, min_points: int) -> np.ndarray:
    """Which sizes a window keeps. dist: [..., S] |ln N - ln N_best| of each size (inf where
    absent) -> [..., S] bool. An int k: the k nearest; a float F: those within a factor F; "auto":
    those within AUTO_FACTOR, then the nearest up to AUTO_MIN_SIZES if within AUTO_MAX_FACTOR;
    always at least the `min_points` nearest."""
    rank = np.argsort(np.argsort(dist, axis=-1, kind="stable"), axis=-1)
    floor = rank < min_points
    if isinstance(window, str):
        return (floor | (dist <= np.log(AUTO_FACTOR) + 1e-12)
                | ((rank < AUTO_MIN_SIZES) & (dist <= np.log(AUTO_MAX_FACTOR) + 1e-12)))
    if isinstance(window, (int, np.integer)):
        return rank < max(int(window), min_points)
    return floor | (dist <= np.log(window) + 1e-12)


def window_mask(x, y, window, min_points: int = 3) -> np.ndarray:
    """[n] bool: the points of one budget the parabola uses. x = ln N, y = loss.

    Sizes are ranked by |ln N - ln N_best| (N_best: the size with the lowest loss); the window
    keeps the sizes `kept_sizes` says, and every point at a kept size.
    """
    sizes = np.unique(x)
    if window is None or len(sizes) <= min_points:
        return np.ones(len(x), bool)
    keep = kept_sizes(np.abs(sizes - x[np.argmin(y)]), window, min_points)
    return np.isin(x, sizes[keep])


def vertex_weight(u, p) -> float:
    """1 / var(vertex) of the parabola p = (p0, p1, p2) fitted at u [n] (u = ln N - x0), for unit
    noise: the delta method, g' (X'X)^-1 g with g = d(-p1 / 2 p2) / dp. 0 where not convex."""
    p0, p1, p2 = p
    X = np.stack([np.ones_like(u), u, u * u], axis=1)
    g = np.array([0.0, -1.0 / (2 * p2), p1 / (2 * p2 * p2)])
    with np.errstate(all="ignore"):
        var = float(g @ np.linalg.pinv(X.T @ X) @ g)
    return 1.0 / var if p2 > 0 and np.isfinite(var) and var > 0 else 0.0


def fit_budget(budget: float, g: pd.DataFrame, window, min_points: int, d_from_data: bool,
                flops_per_token) -> tuple[dict | None, str, np.ndarray]:
    """One budget's windowed parabola -> (row or None, reason if skipped, used mask [n])."""
    x, y = np.log(g["N"].to_numpy()), g["loss"].to_numpy()
    used = window_mask(x, y, window, min_points)
    if len(np.unique(x)) < min_points:
        return None, f"{budget:.3g}: {len(np.unique(x))} distinct sizes < {min_points}", used
    xu, yu = x[used], y[used]
    x0 = float(xu.mean())
    p = fit_parabola(xu - x0, yu, np.ones_like(yu))
    xs, ls = parabola_vertex(p, x0)
    if not np.isfinite(xs):
        return None, f"{budget:.3g}: loss is not convex in log N (p2 = {p[2]:.3g} <= 0)", used
    n_opt = float(np.exp(xs))
    if d_from_data:
        q = weighted_lstsq(np.stack([np.ones_like(xu), xu - x0], axis=1), np.log(g["D"].to_numpy()[used]), np.ones_like(xu))
        d_opt = float(np.exp(q[0] + q[1] * (xs - x0)))
    else:
        d_opt = float(budget / flops_per_token_at(flops_per_token, np.array([n_opt]))[0])
    row = dict(budget=budget, n_points=len(g), n_used=int(used.sum()), p0=p[0], p1=p[1], p2=p[2], x0=x0,
               N_opt=n_opt, D_opt=d_opt, loss_opt=float(ls), N_min=float(np.exp(xu.min())),
               N_max=float(np.exp(xu.max())), inside=bool(xu.min() <= xs <= xu.max()),
               N_used=tuple(float(v) for v in np.unique(np.exp(xu))), precision=vertex_weight(xu - x0, p))
    return row, "", used


def _boot_windows(x, y, w, window, min_points: int) -> np.ndarray:
    """Each resample's own window: x, y [n]; w [R, n] multiplicities -> [R, n] weights inside it."""
    sizes, idx = np.unique(x, return_inverse=True)  # [S], [n]
    if window is None:
        return w
    present = np.zeros((len(w), len(sizes)), bool)
    np.logical_or.at(present.T, idx, (w > 0).T)
    best = np.argmin(np.where(w > 0, y[None], np.inf), axis=1)  # [R]
    dist = np.where(present, np.abs(sizes[None] - x[best][:, None]), np.inf)  # [R, S]
    return w * (kept_sizes(dist, window, min_points) & present)[:, idx]


def boot_budget(row: dict, g: pd.DataFrame, window, min_points: int, d_from_data: bool, n_bootstrap: int,
                 rng: np.random.Generator):
    """Resample one budget's points, window each resample as the full fit was, refit the parabola
    -> vertex ln N, loss, ln D [R] and rejected [R]: not convex, or vertex outside the sizes the
    budget sampled."""
    x, y = np.log(g["N"].to_numpy()), g["loss"].to_numpy()
    x0 = row["x0"]
    w = _boot_windows(x, y, rng.multinomial(len(x), np.full(len(x), 1 / len(x)), size=n_bootstrap).astype(float),
                      window, min_points)  # [R, n]
    xs, ls = parabola_vertex(fit_parabola(x - x0, y, w), x0)
    rejected = ~(np.isfinite(xs) & (xs >= x.min()) & (xs <= x.max()))
    if d_from_data:
        q = weighted_lstsq(np.stack([np.ones_like(x), x - x0], axis=1), np.log(g["D"].to_numpy()), w)
        ld = q[:, 0] + q[:, 1] * (xs - x0)
    else:
        ld = np.full(n_bootstrap, np.nan)
    return xs, ls, ld, rejected


def approach2(results: pd.DataFrame, *, flops_per_token: FlopsPerToken | None = None,
              budget_tol_dex: float = 0.05, min_points: int = 3, drop_off_centre: bool = False,
              n_bootstrap: int = 1000, seed: int = 0, budgets=CHINCHILLA_TABLE3_BUDGETS,
              level: float = 0.95, window: int | float | str | None = DEFAULT_WINDOW,
              weighted: bool = True) -> Approach2:
    """Chinchilla Approach 2; budgets from the `budget` column or by clustering log10 C.

    window: "auto" (default: the sizes within x4 of each budget's lowest loss, at least the 5
    nearest), an int k >= 3 (the k nearest sizes), a float factor > 1, or None (every point, the
    classic all-points parabola). weighted: the power laws across budgets weight each budget by
    its vertex's precision (module docstring); False weights them equally."""
    check_window(window)
    d_from_data = isinstance(results, pd.DataFrame) and "D" in results.columns
    df = prepare_results(results, flops_per_token).assign(budget=lambda d: budgets_of(d, budget_tol_dex))
    df["used"] = False
    rng = np.random.default_rng(seed)
    rows, skipped, boot = [], [], []
    for budget, g in df.groupby("budget", sort=True):
        row, why, used = fit_budget(budget, g, window, min_points, d_from_data, flops_per_token)
        if row is None:
            skipped.append(why)
            continue
        if not row["inside"]:
            warnings.warn(f"IsoFLOP budget {budget:.3g}: the parabola's minimum N = {row['N_opt']:.3g} lies "
                          f"outside the sizes its parabola used [{row['N_min']:.3g}, {row['N_max']:.3g}]; "
                          "an off-centre IsoFLOP biases Approach 2 - sample sizes around the minimum",
                          stacklevel=2)
            if drop_off_centre:
                skipped.append(f"{budget:.3g}: minimum outside sampled sizes (drop_off_centre)")
                continue
        df.loc[g.index[used], "used"] = True
        boot.append(boot_budget(row, g, window, min_points, d_from_data, max(n_bootstrap, 0), rng))
        row["rejected"] = int(boot[-1][3].sum())
        rows.append(row)
    if len(rows) < 2:
        raise ValueError(f"Approach 2 needs at least 2 IsoFLOP budgets with >= {min_points} sizes and a "
                         f"convex parabola; got {len(rows)} (skipped: {skipped or 'none'}). Add a "
                         "'budget' column or runs at more budgets")
    iso = pd.DataFrame(rows)
    prec = iso.pop("precision").to_numpy()
    prec = np.minimum(prec, PRECISION_CAP * np.median(prec)) if weighted else np.ones(len(iso))
    iso.insert(len(iso.columns) - 1, "weight", prec / prec.sum() if prec.sum() > 0 else np.full(len(iso), 1 / len(iso)))
    C, w = iso["budget"].to_numpy(), iso["weight"].to_numpy()
    X, Lb, LD, rej = (np.stack([b[k] for b in boot], axis=1) for k in range(4))  # [R, budgets]
    samples = []
    for xr, ldr, rr in zip(X, LD, rej):
        ok = ~rr  # a rejected budget is left out of this resample's power laws
        Nr = np.exp(xr[ok])
        samples.append((C[ok], Nr, np.exp(ldr[ok]) if d_from_data else C[ok] / flops_per_token_at(flops_per_token, Nr),
                        w[ok]))
    fits = power_law_fits(C, iso["N_opt"].to_numpy(), iso["D_opt"].to_numpy(), samples, budgets, level, weights=w)
    return Approach2(isoflops=iso, points=df, fits=fits, skipped=tuple(skipped), window=window, weighted=weighted,
                     d_source="data (ln D vs ln N at N_opt)" if d_from_data else "C / f(N_opt) (no D column)",
                     n_rejected=int(rej.sum()), n_resamples=rej.size, boot_loss=np.where(rej, np.nan, Lb))
