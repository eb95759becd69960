"""The main job (`make sweep`): an IsoFLOP sweep on the built-in synthetic language.

6 budgets from 1.6e10 to 1.6e12 training FLOPs (100x), counted in real compute: '6n_attn_causal'
(6N plus the causal attention scores, which add 7 % (d56-L4) to 39 % (d8-L2) to 6N at seq 64; the
results table keeps every convention's C). 5 sizes per budget from one ladder of 9
shapes (d8-L2 .. d56-L4, 2.6K-205K non-embedding parameters), centred on a guess of 50 tokens per
parameter.

Learning rate per size through muP (model.parametrization='mup', mup_base_width=4 divides every
width): embeddings and unembedding train at the base rate, hidden matrices at base / (d_model / 4),
logits x 4 / d_model. Base rate 0.2 from `lm-sweep run mup_transfer` (2026-11-30, 300-step runs at
widths 8-64): muP's optimum was 0.13 at d8, 0.23 at d16, 0.32 at d32 and 0.31 at d64 (2.4x over 8x
width), the standard parametrisation's moved from >= 0.16 at d8 to 0.009 at d64; 0.2 is within
0.04 nats of muP's optimum at each of those widths (BENCHMARKS.md). The sweep's longer runs may
prefer a lower rate.

Planned: 30 runs, 1.1e5 optimizer steps (the previous default, 4 budgets 5e10-1.6e12 in '6n': 20
runs, 9.3e4 steps, about 8 minutes on 2 idle cores); its wall time on 2 quiet cores is yet to be
measured. float32 compute: bfloat16 was no faster at these widths on this CPU.
"""

from experiments.configs import ExecConfig, SizeConfig, SweepConfig
from lm.config import DataConfig, ModelConfig, OptimConfig


def get_config() -> SweepConfig:
    return SweepConfig(
        name="default",
        budgets=(1.6e10, 4e10, 1e11, 2.5e11, 6.3e11, 1.6e12),
        convention="6n_attn_causal",
        sizes=SizeConfig(rule="aspect", range=(2e3, 4e5), per_budget=5, window=3.0,
                         tokens_per_param_guess=50.0, aspect=16.0, width_step=4,
                         head_dim=8, min_layers=2),
        model=ModelConfig(vocab_size=64, compute_dtype="float32", parametrization="mup", mup_base_width=4),
        data=DataConfig(),
        optim=OptimConfig(learning_rate=0.2, warmup_steps=20, final_lr_frac=0.1),
        batch_size=8,
        seq_len=64,
        min_steps=200,
        evals_per_run=4,
        eval_batches=8,
        checkpoints_per_run=1,
        exec=ExecConfig(backend="pool", workers=2, threads=1),
    )
