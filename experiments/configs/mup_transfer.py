"""Learning-rate transfer across width, standard vs muP: `lm-sweep run mup_transfer`.

The default sweep's language, batch, sequence length and optimizer; widths 16, 32, 64, 128 (x1-x8)
at depth 2, each trained 300 steps (cosine) at 5 peak learning rates, under the standard
parametrisation (4e-3 .. 0.16, 2.5x apart) and under the default sweep's muP (model.mup_base_width=4,
m = 4..32; base rates 0.05 .. 0.8, 2x apart: the hidden matrices train at rate / m). 40 runs; the
report gives each width's optimal learning rate (parabola vertex in ln lr) and plots loss vs
learning rate and the optimum vs width (plots/lr_transfer.png).

Measured (2026-11-30, 297 s on the 2-core EPYC, BENCHMARKS.md): muP's optimum 0.375 / 0.238 / 0.322 /
0.327 at d16 / d32 / d64 / d128 (1.58x over 8x width); the standard one >= 0.16 at d16 down to
<= 0.004 at d128 (>= 40x). Width 8 (one head, m = 2) was left out: there muP's optimum fell to 0.13.
"""

from experiments.configs import replace
from experiments.sweep_sections import TransferConfig
from experiments.configs.default import get_config as default


def get_config():
    return replace(default(), name="mup_transfer", adaptive=None,
                   transfer=TransferConfig(base_width=16, width_mults=(1, 2, 4, 8), n_layers=2,
                                           learning_rates=(4e-3, 1e-2, 2.5e-2, 6.3e-2, 0.16),
                                           mup_learning_rates=(0.05, 0.1, 0.2, 0.4, 0.8),
                                           parametrizations=("standard", "mup"), steps=300),
                   evals_per_run=1, checkpoints_per_run=0)
