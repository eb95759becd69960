"""Learning-rate transfer across width, standard vs muP: `lm-sweep run mup_transfer`.

The default sweep's language, batch, sequence length and optimizer; widths 8, 16, 32, 64 (x1, x2,
x4, x8 of 8: the default sweep's range of widths) at depth 2, each trained 300 steps (cosine) at 5
peak learning rates 2.5x apart, under the standard parametrisation (4e-3 .. 0.16) and under the
default sweep's muP (model.mup_base_width=4, so m = 2..16; base rates 0.063 .. 2.5: the hidden
matrices train at rate / m, so muP's base rate sits well above the standard optimum). 40 runs; the report gives each width's
optimal learning rate (parabola vertex in ln lr) and plots loss vs learning rate and the optimum vs
width (plots/lr_transfer.png). muP's optimum at x1 is the base learning rate the default sweep
(parametrization='mup') uses at every width: tuned once at the smallest width.
"""

from experiments.configs import TransferConfig, replace
from experiments.configs.default import get_config as default


def get_config():
    return replace(default(), name="mup_transfer",
                   transfer=TransferConfig(base_width=16, width_mults=(1, 2, 4, 8), n_layers=2,
                                           learning_rates=(4e-3, 1e-2, 2.5e-2, 6.3e-2, 0.16),
                                           mup_learning_rates=(0.05, 0.1, 0.2, 0.4, 0.8),
                                           parametrizations=("standard", "mup"), steps=300),
                   evals_per_run=1, checkpoints_per_run=0)
