"""Forecast intervals calibrated by the walk-forward's own out-of-sample errors.

A candidate's linearised interval (candidates.py) is honest only when its law is right and its
residuals are the only noise. The walk-forward shows how far the law's forecasts of later
budgets actually land: each forecast's standardized error z = log(observed / predicted) / sd,
with sd the forecast's own log-space spread (its interval half-width over Student's t). When
the law holds, z has unit spread; a law that bends away from the data beyond its range gives
|z| >> 1 (Approach 3 on Epoch's points), one whose noise model is too pessimistic |z| << 1.

    scale = sqrt((PRIOR + sum z^2) / (PRIOR + n))

is the factor on the interval's half-width: the root-mean-square of the z's, shrunk toward 1
by PRIOR pseudo-errors of unit size (a walk-forward on 5-7 budgets has 1-3 forecast optima;
one lucky or unlucky split must not set the width alone). Optima and runs are scaled
separately (a law can forecast runs well and their envelope's minimum less well). Pure and
deterministic: no draws.

    from lm.scaling.calibrate import calibrated, interval_scale
    models = calibrated(models, predictions)   # predictions: walkforward rows with kind and z
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

PRIOR = 2.0
"""Pseudo-errors of unit size the scale is shrunk toward (how many real ones it takes to move it)."""


def standardized(observed, predicted, hi, quantile: float) -> np.ndarray:
    """[k] z = log(observed / predicted) / sd, sd = log(hi / predicted) / quantile; nan where sd is 0."""
    observed, predicted, hi = (np.asarray(x, float) for x in (observed, predicted, hi))
    with np.errstate(all="ignore"):
        sd = np.log(hi / predicted) / quantile
        return np.where(sd > 0, np.log(observed / predicted) / sd, np.nan)


def interval_scale(z) -> float:
    """Factor on an interval's half-width from standardized out-of-sample errors z [k] (module doc)."""
    z = np.asarray(z, float)
    z = z[np.isfinite(z)]
    return float(np.sqrt((PRIOR + np.sum(z * z)) / (PRIOR + len(z))))


def calibrated(models: dict, pred: pd.DataFrame) -> dict:
    """{name: Model} with `scale` (optima) and `run_scale` (runs) set from each candidate's
    walk-forward rows in pred (candidate, kind, z); a candidate without rows keeps scale 1."""
    out = {}
    for name, model in models.items():
        p = pred[pred["candidate"] == name]
        out[name] = dataclasses.replace(model, scale=interval_scale(p.loc[p["kind"] == "optimum", "z"]),
                                        run_scale=interval_scale(p.loc[p["kind"] == "run", "z"]))
    return out
