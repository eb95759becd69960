"""Warmup-stable-decay beside cosine (Hagele et al. 2024): `lm-sweep run wsd`.

The default sweep's language, shapes and optimizer at 3 budgets (3e10-3e11), plus, for three
sizes that appear at every budget, one constant-learning-rate trunk each with a 20 % (1 - sqrt)
cooldown branched at each budget's token count. The report compares each cooldown with its cosine
twin at equal (N, D). About 45 % of the default sweep's compute.
"""

from experiments.configs import WSDConfig, replace
from experiments.configs.default import get_config as default


def get_config():
    return replace(default(), name="wsd", budgets=(3e10, 1e11, 3e11),
                   wsd=WSDConfig(sizes=("d20-L2", "d24-L2", "d32-L2"), cooldown_frac=0.2, decay_shape="sqrt"))
