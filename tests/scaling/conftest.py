"""Fixtures for lm.scaling tests: the shared reference data (skipped when absent) and the
Approach 3 grid fit of Epoch's 240 points, computed once per session."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
EPOCH_CSV = DATA / "epoch_chinchilla_svg_extracted_data.csv"
OPEN_ATHENA_CSV = DATA / "open_athena_isoflops.csv"


def _read(path: Path) -> pd.DataFrame:
    if not path.exists():
        pytest.skip(f"reference data {path.name} absent: expected at {path} (see shared/data/SOURCES.md)")
    return pd.read_csv(path)


@pytest.fixture(scope="session")
def epoch_csv() -> Path:
    """Path of Epoch's CSV (skips when absent)."""
    _read(EPOCH_CSV)
    return EPOCH_CSV


@pytest.fixture(scope="session")
def epoch_all() -> pd.DataFrame:
    """All 245 points of Epoch's extraction of Chinchilla Fig. 4, as N, D = C/(6N), C, loss."""
    raw = _read(EPOCH_CSV)
    N, C = raw["Model Size"].to_numpy(), raw["Training FLOP"].to_numpy()
    return pd.DataFrame({"N": N, "D": C / (6 * N), "C": C, "loss": raw["loss"].to_numpy()})


@pytest.fixture(scope="session")
def epoch_points(epoch_all) -> pd.DataFrame:
    """The 240 points Epoch fitted: the 5 highest-loss points dropped."""
    drop = epoch_all["loss"].nlargest(5).index
    return epoch_all.drop(index=drop).reset_index(drop=True)


@pytest.fixture(scope="session")
def epoch_fit(epoch_points):
    """Approach 3's full 4,500-start grid fit of the 240 points."""
    from lm.scaling.fit import fit_chinchilla

    return fit_chinchilla(epoch_points["N"], epoch_points["D"], epoch_points["loss"])


@pytest.fixture(scope="session")
def chinchilla_isoflops() -> pd.DataFrame:
    """Epoch's extraction of Chinchilla's IsoFLOP curves (Fig. 3), with nominal budgets."""
    raw = _read(OPEN_ATHENA_CSV)
    ch = raw[raw["source"] == "epochai_chinchilla"]
    return pd.DataFrame({"N": ch["params"].to_numpy(), "D": ch["tokens"].to_numpy(),
                         "budget": ch["budget"].to_numpy(), "loss": ch["loss"].to_numpy()})


def synthetic_results(law, sizes_per_budget: int = 9, budgets=(1e18, 1e19, 1e20, 1e21),
                      noise: float = 0.0, seed: int = 0, span: float = 1.0) -> pd.DataFrame:
    """IsoFLOP runs from a known law: per budget, sizes log-spaced over N_opt * e^(±2 span)
    around the law's optimum (C = 6ND); loss times log-normal noise of sd `noise`."""
    rng = np.random.default_rng(seed)
    rows = []
    for c in budgets:
        n_opt, _ = law.optimal(c)
        for k, n in enumerate(n_opt * np.exp(np.linspace(-span, span, sizes_per_budget) * 2.0)):
            d = c / (6 * n)
            loss = float(law.loss(n, d)) * float(np.exp(noise * rng.standard_normal()))
            rows.append(dict(run=f"c{c:.0e}-{k}", N=n, D=d, C=c, budget=c, loss=loss))
    return pd.DataFrame(rows)


@pytest.fixture
def make_results():
    """The `synthetic_results(law, ...)` factory."""
    return synthetic_results


@pytest.fixture(scope="session")
def synthetic_approaches():
    """(results, Approaches) for IsoFLOP runs from a known law with 0.5% noise."""
    from lm.scaling.approaches import fit_approaches
    from lm.scaling.laws import ChinchillaLaw

    law = ChinchillaLaw(E=1.8, A=480.0, B=2100.0, alpha=0.35, beta=0.37)
    df = synthetic_results(law, noise=0.005, seed=3)
    return df, fit_approaches(df, n_bootstrap=20, budgets=(1e21, 5.76e23))


@pytest.fixture(scope="session")
def muennighoff_runs() -> pd.DataFrame:
    """Muennighoff et al. 2023's runs (N, D, U_unique_tokens, epochs, val_loss; skips when absent)."""
    return _read(DATA / "muennighoff2023_datablations_runs.csv")
