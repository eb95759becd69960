"""Walk-forward (rolling-origin) model choice: which law forecasts budgets it has not seen?

    from lm.scaling.walkforward import choose
    ch = choose(table)                  # pandas table, runs or minima (results.table_shape)
    print(ch.summary())                 # every candidate's errors, the naive baseline, the choice
    ch.forecast([1e21, 1e22])           # budget, N, D, loss, lo, hi from the chosen law
    ch.n_opt(1e21)                      # N_opt(C) [m] to centre the next IsoFLOP stage on

`choose` is a pure function of its arguments (no I/O, no global state): the same table and seed
give the same choice. Steps:
1. budgets: the table's `budget` column or clusters of log10 C (results.budgets_of); a minima
   table's rows are its budgets. Observed optimum per budget: a minima table's row; for runs,
   the budget's windowed parabola minimum, and only budgets whose vertex lies inside the sizes
   used count as budgets here (a budget's best run of one or two sizes is not its optimum; its
   runs are still fitted and, as runs, scored).
2. splits: fit on the budgets up to C_j (at least `min_fit` = 3), predict every larger budget's
   optimal loss and, for per-run tables, every larger run's loss. Every such origin is a split;
   `max_splits` (default 6) keeps that many, evenly spaced and always including the last (the
   largest training set), so a table with 20 budgets costs 6 refits per candidate, not 17.
3. every candidate (candidates.CANDIDATES) is fitted at every split; a fit that raises or is not
   identified (identify.py) gives no predictions for that split (counted as failed).
4. score: mean |relative error| of the optimal-loss forecasts, the one quantity every candidate
   forecasts, and, for laws of (N, D) on per-run tables, of every later run's loss.
5. choice, among candidates identified on the whole table too (pick.py, pick_candidate): each
   family's champion (the frontier law's: the naive baseline unless another beats it by more
   than one standard error; Approach 3's: the lowest mean error over its later optima and runs),
   then Approach 3 when its own forecasts of later runs show its law holding beyond the data
   (no excess spread, no one-sided misses) unless the frontier beats it by more than one standard
   error, else the champion with the lower mean optimum error. The naive baseline (the frontier
   law by least squares) is always a row of the table.
6. intervals: each candidate's linearised intervals are widened by its walk-forward's own
   standardized errors (calibrate.py), so a law that misses its later budgets by more than its
   spread says gets intervals that wide.
`Choice.forecast` refits the chosen candidate on the whole table.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from lm.scaling.calibrate import calibrated, standardized
from lm.scaling.candidates import CANDIDATES, NAIVE, Candidate, Model, fit_candidates
from lm.scaling.forecast import observed_optimum
from lm.scaling.frontier import frontier_minima, prepare_minima
from lm.scaling.pick import a3_champion, pick_candidate
from lm.scaling.results import budgets_of, prepare_results, table_shape


@dataclass(frozen=True)
class Data:
    """A table split into what the candidates read."""

    shape: str
    runs: pd.DataFrame | None
    """Prepared runs with a budget column (None for a minima table)."""
    minima: pd.DataFrame
    """Fitting minima: budget, loss, N, D, n_used (parabola vertices inside the sizes for runs)."""
    observed: pd.DataFrame
    """One row per budget: budget, loss, n_used (what a forecast of that budget is scored on)."""

    def upto(self, c: float, window, fpt, tol) -> "Data":
        if self.runs is None:
            m = self.minima[self.minima["budget"] <= c]
            return Data(self.shape, None, m, self.observed[self.observed["budget"] <= c])
        r = self.runs[self.runs["budget"] <= c]
        return Data(self.shape, r, frontier_minima(r, window=window, flops_per_token=fpt, budget_tol_dex=tol),
                    self.observed[self.observed["budget"] <= c])


def split_data(table: pd.DataFrame, shape: str = "auto", *, window=5, flops_per_token=None,
               budget_tol_dex: float = 0.05) -> Data:
    shape = table_shape(table, shape, budget_tol_dex)
    if shape == "minima":
        m = prepare_minima(table)
        return Data(shape, None, m, m[["budget", "loss", "n_used"]])
    runs = prepare_results(table, flops_per_token).assign(budget=lambda d: budgets_of(d, budget_tol_dex))
    obs = [dict(budget=float(c), **dict(zip(("loss", "n_used"), observed_optimum(c, g, window, flops_per_token))))
           for c, g in runs.groupby("budget", sort=True)]
    obs = [o for o in obs if o["n_used"] > 1]  # a budget's best run is no optimum: only parabola minima
    minima = frontier_minima(runs, window=window, flops_per_token=flops_per_token, budget_tol_dex=budget_tol_dex)
    return Data(shape, runs, minima, pd.DataFrame(obs))


def origins(budgets, min_fit: int = 3, max_splits: int | None = 6) -> list[float]:
    """The last training budget of each split: budgets[j - 1] for min_fit <= j < len(budgets)."""
    b = np.sort(np.unique(budgets))
    cand = list(b[min_fit - 1:-1])
    if max_splits is not None and len(cand) > max_splits:
        idx = np.unique(np.round(np.linspace(0, len(cand) - 1, max_splits)).astype(int))
        cand = [cand[i] for i in idx]
    return [float(c) for c in cand]


def _rows(model: Model, test: Data, origin: float, level: float) -> list[dict]:
    rows = []
    obs = test.observed
    loss, lo, hi, n, d = model.optimum(obs["budget"].to_numpy(), obs["n_used"].to_numpy(), level)
    z = standardized(obs["loss"], loss, hi, level, model.dof)
    for i, r in enumerate(obs.itertuples()):
        rows.append(dict(origin=origin, kind="optimum", budget=r.budget, N=n[i], D=d[i], predicted=loss[i],
                         lo=lo[i], hi=hi[i], observed=r.loss, z=z[i]))
    if test.runs is not None and len(test.runs):
        out = model.runs(test.runs["N"], test.runs["D"], level)
        if out is not None:
            z = standardized(test.runs["loss"], out[0], out[2], level, model.dof)
            for i, r in enumerate(test.runs.itertuples()):
                rows.append(dict(origin=origin, kind="run", budget=r.budget, N=r.N, D=r.D, predicted=out[0][i],
                                 lo=out[1][i], hi=out[2][i], observed=r.loss, z=z[i]))
    return rows


def _test_part(data: Data, c: float) -> Data:
    obs = data.observed[data.observed["budget"] > c]
    runs = None if data.runs is None else data.runs[data.runs["budget"] > c]
    return Data(data.shape, runs, data.minima.iloc[:0], obs)


def walk_forward(data: Data, candidates=CANDIDATES, *, min_fit: int = 3, max_splits: int | None = 6,
                 level: float = 0.9, window=5, flops_per_token=None, budget_tol_dex: float = 0.05):
    """-> (predictions frame: candidate, origin, kind, budget, N, D, predicted, lo, hi, observed,
    failures {candidate: [(origin, reason)]}, origins)."""
    orgs = origins(data.observed["budget"], min_fit, max_splits)
    rows, failures = [], {c.name: [] for c in candidates}
    pad_to = None if data.runs is None else len(data.runs)
    for c in orgs:
        train, test = data.upto(c, window, flops_per_token, budget_tol_dex), _test_part(data, c)
        fitted = fit_candidates(candidates, train.runs, train.minima, pad_to)
        for cand in candidates:
            model = fitted[cand.name]
            if isinstance(model, str):
                failures[cand.name].append((c, model))
                continue
            if not model.identified:
                failures[cand.name].append((c, "unidentified: " + "; ".join(model.reasons)))
                continue
            rows += [dict(candidate=cand.name, **r) for r in _rows(model, test, c, level)]
    pred = pd.DataFrame(rows, columns=["candidate", "origin", "kind", "budget", "N", "D", "predicted", "lo", "hi",
                                       "observed", "z"])
    pred["rel_error"] = (pred["predicted"] - pred["observed"]) / pred["observed"]
    pred["covered"] = ((pred["observed"] >= pred["lo"]) & (pred["observed"] <= pred["hi"])).astype(float)
    return pred, failures, orgs


def score_table(pred: pd.DataFrame, failures: dict, candidates, n_splits: int) -> pd.DataFrame:
    """One row per candidate: splits fitted, n, mean and worst |rel. error|, 90 % coverage (optima),
    and the mean error on runs where the law predicts them."""
    rows = []
    for cand in candidates:
        p = pred[pred["candidate"] == cand.name]
        opt, run = p[p["kind"] == "optimum"], p[p["kind"] == "run"]
        e = opt["rel_error"].abs()
        rows.append(dict(candidate=cand.name, baseline=cand == NAIVE, splits=n_splits - len(failures[cand.name]),
                         n=len(opt), mean_error=e.mean() if len(e) else np.nan, worst_error=e.max() if len(e) else np.nan,
                         coverage=opt["covered"].mean() if len(opt) else np.nan,
                         run_error=run["rel_error"].abs().mean() if len(run) else np.nan))
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class Choice:
    """The walk-forward's result: the table, the chosen candidate and why, and its full-data fit."""

    shape: str
    table: pd.DataFrame
    """score_table's rows (candidate, baseline, splits, n, mean_error, worst_error, coverage, run_error)."""
    predictions: pd.DataFrame = field(repr=False)
    origins: tuple[float, ...]
    chosen: str | None
    reason: str
    models: dict = field(repr=False, default_factory=dict)
    """{candidate name: Model} fitted on the whole table (identified or not)."""
    failures: dict = field(repr=False, default_factory=dict)
    level: float = 0.9

    @property
    def model(self) -> Model | None:
        return self.models.get(self.chosen) if self.chosen else None

    def a3_champion(self) -> Candidate | None:
        """Approach 3's candidate (fitter and Huber delta) whose walk-forward forecasts of later optima
        and runs were best (pick.a3_champion), among those identified on the whole table that forecast
        a split; None where there is none. Whether Approach 3 is the law chosen is `chosen`."""
        names = [n for n, m in self.models.items() if m.candidate.kind == "a3" and m.identified
                 and (self.predictions["candidate"] == n).any()]
        best = a3_champion(self.predictions, names) if names else None
        return self.models[best].candidate if best else None

    def forecast(self, C, level: float | None = None, name: str | None = None) -> pd.DataFrame:
        """budget, N, D, loss, lo, hi at budgets C [m] from the chosen law (or candidate `name`).
        N and D come from the law when it has them (Approach 3; the frontier's N_opt, D_opt power
        laws), else from the best identified candidate that has them, else nan."""
        model = self.models[name] if name else self.model
        if model is None:
            raise ValueError(f"no forecast: {self.reason}")
        C = np.atleast_1d(np.asarray(C, float))
        loss, lo, hi, n, d = model.optimum(C, 1, level or self.level)
        if not np.all(np.isfinite(n)):
            for other in self._ranked():
                n2, d2 = self.models[other].optimum(C)[3:]
                if np.all(np.isfinite(n2)):
                    n, d = n2, d2
                    break
        return pd.DataFrame(dict(budget=C, N=n, D=d, loss=loss, lo=lo, hi=hi))

    def n_opt(self, C) -> np.ndarray:
        """N_opt(C) [m] (see forecast)."""
        return self.forecast(C)["N"].to_numpy()

    def _ranked(self) -> list[str]:
        t = self.table[self.table["candidate"].isin([k for k, m in self.models.items() if m.identified])]
        return list(t.sort_values("mean_error", kind="stable")["candidate"])

    def summary(self) -> str:
        lines = [f"Walk-forward model choice ({self.shape} table; {len(self.origins)} splits, fit up to C_j = "
                 + ", ".join(f"{c:.3g}" for c in self.origins) + "; |relative error| of each later budget's "
                 f"optimal loss; {100 * self.level:.0f} % interval coverage):",
                 f"  {'candidate':<34} {'splits':>6} {'n':>4} {'mean err':>9} {'worst':>8} {'coverage':>9} {'runs err':>9}"]
        for r in self.table.itertuples():
            if r.splits == 0:
                why = self.failures.get(r.candidate, [(None, "no split fitted")])
                lines.append(f"  {r.candidate:<34} not fitted{' (naive baseline)' if r.baseline else ''}: "
                             f"{why[-1][1] if why else 'no split fitted'}")
                continue
            mark = " <- chosen" if r.candidate == self.chosen else (" (naive baseline)" if r.baseline else "")
            f = lambda v: "n/a" if not np.isfinite(v) else f"{100 * v:.2f}%"
            lines.append(f"  {r.candidate:<34} {r.splits:>6} {r.n:>4} {f(r.mean_error):>9} {f(r.worst_error):>8} "
                         f"{f(r.coverage) if np.isfinite(r.coverage) else 'n/a':>9} {f(r.run_error):>9}{mark}")
        lines.append(f"  choice: {self.chosen or 'none'}: {self.reason}")
        if self.model is not None:
            lines.append(f"  its intervals: the linearised ones x{self.model.scale:.2f} (optima), "
                         f"x{self.model.run_scale:.2f} (runs), widened by its walk-forward errors (calibrate.py)")
        for name, m in self.models.items():
            if not m.identified:
                lines.append(f"  {name} on the whole table: unidentified: {'; '.join(m.reasons)}")
        return "\n".join(lines)


def choose(table: pd.DataFrame, *, shape: str = "auto", candidates=CANDIDATES, min_fit: int = 3,
           max_splits: int | None = 6, level: float = 0.9, window=5, flops_per_token=None,
           budget_tol_dex: float = 0.05) -> Choice:
    """Walk-forward model choice over `candidates` on a runs or minima table (module doc).

    table: pandas frame with N, D (or C), loss[, budget] (runs) or C (or budget), loss[, N, D]
    (minima). Deterministic (no random draws: intervals are linearised, candidates.py, and
    widened by the walk-forward's errors, calibrate.py).
    Raises ValueError for a table that fails validation or has fewer than min_fit + 1 budgets.
    """
    candidates = tuple(candidates)
    if NAIVE not in candidates:
        candidates = candidates + (NAIVE,)
    data = split_data(table, shape, window=window, flops_per_token=flops_per_token, budget_tol_dex=budget_tol_dex)
    if len(data.observed) < min_fit + 1:
        raise ValueError(f"walk-forward needs >= {min_fit + 1} budgets with an observed optimum (fit on {min_fit}, "
                         f"predict 1 or more); the table has {len(data.observed)}"
                         + (" (budgets whose IsoFLOP parabola has its vertex inside the sizes sampled)"
                            if data.runs is not None else ""))
    pred, failures, orgs = walk_forward(data, candidates, min_fit=min_fit, max_splits=max_splits, level=level,
                                        window=window, flops_per_token=flops_per_token, budget_tol_dex=budget_tol_dex)
    table_ = score_table(pred, failures, candidates, len(orgs))
    models = {}
    for name, m in fit_candidates(candidates, data.runs, data.minima).items():
        if isinstance(m, str):
            failures[name].append((None, m))
        else:
            models[name] = m
    eligible = [c for c in candidates if c.name in models and models[c.name].identified
                and (pred["candidate"] == c.name).any()]
    chosen, reason = pick_candidate(table_, pred, eligible)
    models = calibrated(models, pred)
    return Choice(data.shape, table_, pred, tuple(orgs), chosen, reason, models, failures, level)
