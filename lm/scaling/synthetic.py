"""Synthetic IsoFLOP grids drawn from a known law, for tests, benchmarks and the docs' tables."""

from __future__ import annotations

import numpy as np
import pandas as pd

from lm.scaling.laws import ChinchillaLaw, FlopsPerToken, six_n


def isoflop_grid(law: ChinchillaLaw, factor: float, *, n_sizes: int = 9, budgets=np.geomspace(1e18, 1e22, 5),
                 noise: float = 0.0, seed: int = 0, flops_per_token: FlopsPerToken = six_n,
                 drift: bool = True) -> pd.DataFrame:
    """IsoFLOP runs (N, D, C, budget, loss) from `law`.

    Per budget, n_sizes log-spaced sizes over [c / factor, c * factor] around a centre c. With
    drift=True the centre moves from N_opt / sqrt(factor) to N_opt * sqrt(factor) across the
    budgets (a real sweep's fixed list of sizes is off-centre by different amounts at each
    budget); drift=False centres every budget on its N_opt. D = C / flops_per_token(N);
    loss = law(N, D) times log-normal noise of sd `noise`.
    """
    rng = np.random.default_rng(seed)
    fpt = None if flops_per_token is six_n else flops_per_token
    shifts = np.geomspace(factor ** -0.5, factor ** 0.5, len(budgets)) if drift else np.ones(len(budgets))
    rows = []
    for c, shift in zip(budgets, shifts):
        n_opt, _ = law.optimal(c, fpt)
        for n in np.geomspace(n_opt * shift / factor, n_opt * shift * factor, n_sizes):
            d = c / float(flops_per_token(n))
            rows.append(dict(N=n, D=d, C=c, budget=c,
                             loss=float(law.loss(n, d)) * float(np.exp(noise * rng.standard_normal()))))
    return pd.DataFrame(rows)
