"""Learning-rate transfer across width, standard vs muP: `lm-sweep run mup_transfer`.

The default sweep's language, batch, sequence length and optimizer; widths 16, 32, 64, 128
(x1, x2, x4, x8 of 16) at depth 2, each trained 300 steps (cosine) at 5 peak
learning rates a factor 2 apart, under the standard parametrisation and under the default sweep's muP (model.mup_base_width=4,
so m = 4..32). 40 runs; the report gives each
width's optimal learning rate (parabola vertex in ln lr) and plots loss vs learning rate and the
optimum vs width (plots/lr_transfer.png). muP's optimum at x1 is the base learning rate an
IsoFLOP sweep with parametrization='mup' can use at every width.
"""

from experiments.configs import TransferConfig, replace
from experiments.configs.default import get_config as default


def get_config():
    return replace(default(), name="mup_transfer",
                   transfer=TransferConfig(base_width=16, width_mults=(1, 2, 4, 8), n_layers=2,
                                           learning_rates=(2e-3, 4e-3, 8e-3, 1.6e-2, 3.2e-2),
                                           parametrizations=("standard", "mup"), steps=300),
                   evals_per_run=1, checkpoints_per_run=0)
