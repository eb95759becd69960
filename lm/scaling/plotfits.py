"""The fits the figures draw beyond the approaches' own (no matplotlib here: lm-fit compiles their
programs ahead before it knows whether it will draw).

- `frontier_law`: the loss-vs-compute figure's offset law E + K C^-gamma.
- `lowest_loss_runs`: the runs that lower the best loss so far, in order of compute.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from lm.scaling.fit import fit_offset_power_law


def lowest_loss_runs(C, loss) -> tuple[np.ndarray, np.ndarray]:
    """(C, loss) [k] of the runs whose loss is below every run's with less compute; C, loss: [n]."""
    order = np.argsort(np.asarray(C, float))
    C, loss = np.asarray(C, float)[order], np.asarray(loss, float)[order]
    keep = np.concatenate([[True], loss[1:] < np.minimum.accumulate(loss)[:-1]])
    return C[keep], loss[keep]


def frontier_law(res, df: pd.DataFrame):
    """Offset power law E + K C^-gamma fitted to the frontier (Approach 2 minima, else the
    Pareto frontier of final losses); None when fewer than 4 frontier points.
    res: an `approaches.Approaches` or None; df: prepared runs (C, loss)."""
    if res is not None and res.approach2 is not None and len(res.approach2.isoflops) >= 4:
        iso = res.approach2.isoflops
        return fit_offset_power_law(iso["budget"], iso["loss_opt"]).law, "Approach 2 minima"
    C, loss = lowest_loss_runs(df["C"].to_numpy(), df["loss"].to_numpy())
    if len(C) < 4:
        return None, ""
    return fit_offset_power_law(C, loss).law, "lowest-loss runs"
