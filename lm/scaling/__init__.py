"""Scaling-law fitting: functional forms, robust fits with bootstrap intervals, Chinchilla's
three approaches, plots and the `lm-fit` command. Needs nothing from the model code.

    from lm.scaling import fit_approaches
    res = fit_approaches(results_df)          # columns N, D (or C), loss[, budget, run]
    print(res.summary())

Modules: laws (forms, published constants, compute-optimal allocation), optimize (batched
L-BFGS), fit (Approach 3, Kaplan, offset power law), constraints (fixed E, tied exponents,
Huber delta, loss space), vpnls (variable projection), bootstrap, results (the table),
envelope (Approach 1), isoflop (Approach 2, windowed), approaches (all three; extrapolation),
forecast (held-back budgets), frontier (the frontier law L_opt(C) = E + K C^-gamma), identify
(identifiability checks), candidates + walkforward (walk-forward model choice: `choose(table)`),
aim (--holdout-above/--holdout/--predict, forecast.csv), tables (sweep folders), fitoptions +
pipeline (what lm-fit and lm-sweep fit run), kaplan (single-variable laws), datalimited (Muennighoff et al.),
synthetic (IsoFLOP grids from a known law), plots, cli.
"""

from lm.scaling.approaches import (CHINCHILLA_TABLE3_BUDGETS, Approach3, Approaches, Extrapolation,
                                   approach3, extrapolation, fit_approaches)
from lm.scaling.bootstrap import ChinchillaBootstrap, Estimate, bootstrap_chinchilla
from lm.scaling.constraints import FitConstraints
from lm.scaling.datalimited import DataConstrainedLaw, fit_data_constrained, fit_data_constrained_table
from lm.scaling.envelope import Approach1, approach1
from lm.scaling.fit import (FitResult, chinchilla_grid, chinchilla_objective, fit_chinchilla, fit_kaplan,
                            fit_offset_power_law, fit_power_law)
from lm.scaling.forecast import Forecast, forecast
from lm.scaling.frontier import Frontier, fit_frontier
from lm.scaling.isoflop import Approach2, approach2
from lm.scaling.kaplan import KaplanFit, fit_kaplan_single, kaplan_fits
from lm.scaling.laws import (CHINCHILLA, CHINCHILLA_UNROUNDED, EPOCH_REFIT, KAPLAN, ChinchillaLaw,
                             KaplanLaw, KaplanPowerLaw, OffsetPowerLaw, PowerLaw, optimal_allocation, six_n)
from lm.scaling.synthetic import isoflop_grid
from lm.scaling.vpnls import fit_vpnls
from lm.scaling.walkforward import Choice, choose

__all__ = [
    "CHINCHILLA", "CHINCHILLA_TABLE3_BUDGETS", "CHINCHILLA_UNROUNDED", "EPOCH_REFIT", "KAPLAN",
    "Approach1", "Approach2", "Approach3", "Approaches", "ChinchillaBootstrap", "ChinchillaLaw", "Choice",
    "Frontier", "choose", "fit_frontier",
    "DataConstrainedLaw", "Estimate", "Extrapolation", "FitConstraints", "FitResult", "Forecast",
    "KaplanFit", "KaplanLaw", "KaplanPowerLaw", "OffsetPowerLaw",
    "PowerLaw", "approach1", "approach2", "approach3", "bootstrap_chinchilla", "chinchilla_grid",
    "chinchilla_objective", "extrapolation", "fit_approaches", "fit_chinchilla", "fit_data_constrained",
    "fit_data_constrained_table", "fit_kaplan", "fit_kaplan_single", "fit_offset_power_law", "fit_power_law", "fit_vpnls", "forecast",
    "isoflop_grid", "kaplan_fits", "optimal_allocation", "six_n",
]
