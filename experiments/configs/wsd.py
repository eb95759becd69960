"""A WSD IsoFLOP sweep beside the cosine one (Hagele et al. 2024): `lm-sweep run wsd`.

The default sweep's language, shapes (depth 2, muP, base rate 0.2, one rate for every run: the
trunks have no single horizon) and batch, on a denser grid of
budgets: 10 budgets 6.3e9 .. 6.3e11 (100x, 1.7x apart), 5 sizes each from a ladder 4x around the
guessed optimum, so each shape sits at up to 8 budgets and its one trunk serves all of them. For
every shape, one constant-learning-rate trunk checkpoints at each of its budgets' token counts and a
20 % (1 - sqrt) cooldown branches there: every WSD point has a cosine twin at equal (N, D). The report
fits both sweeps (Approach 1 from finished horizons: cooldown ends and ended cosine runs), prints
their exponents a side by side with Approach 3's laws, and the training FLOPs each used (WSD: trunks
plus the cooldowns' own steps). Planned: 42 cosine runs (7.8e12 FLOPs) and 7 trunks + 42 cooldowns
(4.4e12 FLOPs, 57 % of cosine). With the default sweep's 6 budgets 2.5x apart a shape sits at only
1-5 budgets and WSD would cost ~73 % of cosine: WSD saves compute when budgets are dense.
"""

from experiments.configs import replace
from experiments.sweep_sections import WSDConfig
from experiments.configs.default import get_config as default

BUDGETS = (6.3e9, 1.1e10, 1.8e10, 2.9e10, 4.9e10, 8.1e10, 1.4e11, 2.3e11, 3.8e11, 6.3e11)


def get_config():
    base = default()
    return replace(base, name="wsd", budgets=BUDGETS, adaptive=None,
                   sizes=replace(base.sizes, per_budget=5, window=4.0, range=(2e3, 4e5)),
                   wsd=WSDConfig(sizes=(), cooldown_frac=0.2, decay_shape="sqrt"))
