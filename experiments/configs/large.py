"""The main job's recipe on 1.6x larger budgets: `lm-sweep run large`.

As experiments/configs/default.py (depth-2 muP shapes, base rate 0.2, batch 8 x 64, '6n_attn_causal'),
with the fixed-grid design (adaptive=None, window 3.0) and 6 budgets 2.5e10 .. 2.5e12 (100x), sizes up to d104-L2 (360K parameters) and the ladder centred on
20 tokens per parameter. 20.7e12 training FLOPs, 1.57x the default's.

Measured (2026-11-30, 2-core AMD EPYC AVX-512, machine shared with four other jobs, load 7-16: the
2324 s of training is not the quiet figure, which the FLOPs put near 10 minutes): held-out largest
budget's optimal loss forecast by Approach 3 within 0.26 % (Approach 2 0.72 %); Approach 3
a = 0.549 [0.504, 0.589] (width 0.085); Approach 2 a = 0.568, inside it; fitted E = 1.411 [1.389,
1.434] vs the floor 1.340 (+5.3 %, the interval excludes the floor).
"""

from experiments.configs import replace
from experiments.configs.default import get_config as default


def get_config():
    base = default()
    return replace(base, name="large", budgets=(2.5e10, 6.3e10, 1.6e11, 4e11, 1e12, 2.5e12), adaptive=None,
                   sizes=replace(base.sizes, range=(2e3, 6e5), window=3.0, tokens_per_param_guess=20.0))
