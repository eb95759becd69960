"""The main job (`make sweep`): an IsoFLOP sweep on the built-in synthetic language.

4 budgets from 5e10 to 1.6e12 training FLOPs (32x, C = 6 N D with N non-embedding parameters), 5
sizes per budget from one ladder of 8 shapes (5.8K-205K non-embedding parameters, depth 2-4),
centred on a guess of 50 tokens per parameter (what a pilot sweep found), 2 single-threaded
workers: about 8 minutes on 2 idle CPU cores, 89.5 % of the workers' time inside training steps.
float32 compute: bfloat16 was no faster at these widths on this CPU (no native bf16).
"""

from experiments.configs import ExecConfig, SizeConfig, SweepConfig
from lm.config import DataConfig, ModelConfig, OptimConfig


def get_config() -> SweepConfig:
    return SweepConfig(
        name="default",
        budgets=(5e10, 1.6e11, 5e11, 1.6e12),
        convention="6n_attn_causal",
        sizes=SizeConfig(rule="aspect", range=(4e3, 4e5), per_budget=5, window=3.0,
                         tokens_per_param_guess=50.0, aspect=16.0, width_step=4,
                         head_dim=8, min_layers=2),
        model=ModelConfig(vocab_size=64, compute_dtype="float32", parametrization="mup", mup_base_width=4),
        data=DataConfig(),
        optim=OptimConfig(learning_rate=3e-3, warmup_steps=20, final_lr_frac=0.1),
        batch_size=8,
        seq_len=64,
        min_steps=200,
        evals_per_run=4,
        eval_batches=8,
        checkpoints_per_run=1,
        exec=ExecConfig(backend="pool", workers=2, threads=1),
    )
