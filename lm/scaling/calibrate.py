"""Forecast intervals calibrated by the walk-forward's own out-of-sample errors.

A candidate's linearised interval (candidates.py) is honest only when its law is right and its
residuals are the only noise. The walk-forward shows how far the law's forecasts of later
budgets actually land: each forecast's standardized error z = log(observed / predicted) / sd,
with sd the forecast's own log-space spread (its interval half-width over Student's t), mapped
to the normal with the same tail probability (`standardized`). When the law holds, z has unit
spread; a law that bends away from the data beyond its range gives
|z| >> 1 (Approach 3 on Epoch's points), one whose noise model is too pessimistic |z| << 1.

    scale = sqrt((PRIOR + sum z^2) / (PRIOR + n))

is the root-mean-square of the z's, shrunk toward 1 by PRIOR pseudo-errors of unit size (a
walk-forward on 5-7 budgets has 1-3 forecast optima; one lucky or unlucky split must not set
the width alone). Each z counts with weight w = (h / mean h)^2, h = log10(budget / origin), the
distance of its forecast beyond its training data: a law's own error beyond the data grows with
that distance (its interval assumes the law holds), and the forecasts it is asked for lie at
least as far out as the walk-forward's longest ones, so those say more about their width. On the
public tables this raised the held-out optima's coverage from 59 to 61 of 83 (BENCHMARKS.md). `calibrated` widens an interval by it and never narrows one (max(1, scale)):
the linearised interval leaves out the law's own error beyond the data, so it is a floor, and
1-3 forecasts that land close are too little evidence to go below the fit's own noise. Optima
and runs are scaled separately (a law can forecast runs well and their envelope's minimum less
well). Pure and deterministic: no draws.

    from lm.scaling.calibrate import calibrated, interval_scale
    models = calibrated(models, predictions)   # predictions: walkforward rows with kind and z
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
from scipy import stats

Z_MAX = 30.0
"""Cap on a mapped standardized error (a t tail probability below ~1e-197 maps to infinity)."""
PRIOR = 2.0
"""Pseudo-errors of unit size the scale is shrunk toward (how many real ones it takes to move it)."""


def standardized(observed, predicted, hi, level: float, dof: int) -> np.ndarray:
    """[k] standardized errors of forecasts whose `level` intervals end at hi [k]: t = log(observed /
    predicted) / sd with sd = log(hi / predicted) / t_q (Student's t quantile, dof >= 1), mapped to
    the standard normal with the same tail probability (a fit with 1 dof has t's heavy tails; its
    mapped z has unit spread when the law holds). nan where sd is 0; |z| <= Z_MAX."""
    observed, predicted, hi = (np.asarray(x, float) for x in (observed, predicted, hi))
    dof = max(int(dof), 1)
    with np.errstate(all="ignore"):
        sd = np.log(hi / predicted) / stats.t.ppf((1 + level) / 2, dof)
        t = np.where(sd > 0, np.log(observed / predicted) / sd, np.nan)
        z = np.sign(t) * np.minimum(stats.norm.isf(stats.t.sf(np.abs(t), dof)), Z_MAX)
    return np.where(np.isfinite(t), z, np.nan)


def interval_scale(z, w=None) -> float:
    """Factor on an interval's half-width from standardized out-of-sample errors z [k] with
    weights w [k] (default 1; module doc: horizon_weights)."""
    z = np.asarray(z, float)
    w = np.ones_like(z) if w is None else np.asarray(w, float)
    ok = np.isfinite(z) & np.isfinite(w)
    z, w = z[ok], w[ok]
    return float(np.sqrt((PRIOR + np.sum(w * z * z)) / (PRIOR + np.sum(w))))


def horizon_weights(origin, budget) -> np.ndarray:
    """[k] weights (h / mean h)^2 of forecasts at `budget` [k] from training data up to `origin` [k],
    h = log10(budget / origin) (module doc); 1 where h is not positive and finite."""
    h = np.log10(np.asarray(budget, float) / np.asarray(origin, float))
    ok = np.isfinite(h) & (h > 0)
    if not ok.any():
        return np.ones_like(h)
    return np.where(ok, (h / h[ok].mean()) ** 2, 1.0)


def calibrated(models: dict, pred: pd.DataFrame) -> dict:
    """{name: Model} with `scale` (optima) and `run_scale` (runs) = max(1, interval_scale) of each
    candidate's walk-forward rows in pred (candidate, kind, origin, budget, z), horizon-weighted;
    without rows, scale 1."""
    out = {}
    for name, model in models.items():
        p = pred[pred["candidate"] == name]
        k = {}
        for kind in ("optimum", "run"):
            q = p[p["kind"] == kind]
            k[kind] = max(1.0, interval_scale(q["z"], horizon_weights(q["origin"], q["budget"])))
        out[name] = dataclasses.replace(model, scale=k["optimum"], run_scale=k["run"])
    return out
