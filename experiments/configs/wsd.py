"""A WSD IsoFLOP sweep beside the cosine one (Hagele et al. 2024): `lm-sweep run wsd`.

The default sweep (same language, shapes, budgets, muP and learning rate), plus for every shape one
constant-learning-rate trunk that checkpoints at each of its budgets' token counts, and a 20 %
(1 - sqrt) cooldown branched there for each budget: every WSD point has a cosine twin at equal
(N, D). The report fits both sweeps (Approach 1 from finished horizons: cooldown ends and ended
cosine runs), prints their exponents a side by side with Approach 3's laws, and the training FLOPs
each used (WSD: trunks plus the cooldowns' own steps). Planned: 30 cosine runs (1.32e13 FLOPs) and
9 trunks + 30 cooldowns (9.7e12 FLOPs, 73 % of cosine: a shape sits at 1-6 budgets, and its trunk
runs to 80 % of its largest one).
"""

from experiments.configs import WSDConfig, replace
from experiments.configs.default import get_config as default


def get_config():
    return replace(default(), name="wsd", wsd=WSDConfig(sizes=(), cooldown_frac=0.2, decay_shape="sqrt"))
