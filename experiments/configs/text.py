"""The real-text main job (`make sweep-text`): an adaptive IsoFLOP sweep on Python source code.

The corpus needs no download: the .py files of three pinned pure-Python wheels (jax, flax, optax;
lm.data.corpus), 3 MB of training text in a fixed hash order with whole files held out for
evaluation, read through the project's local-text TFDS builder and tokenized by a sentencepiece BPE
model of 512 pieces trained on it (small vocabulary for models of 1e4-1e6 parameters). The sweep
records the corpus recipe and the SHA-256 of its bytes in corpus.json.

5 budgets, 3e10 .. 3e12 FLOPs (100x), trained in ascending stages as the default sweep's (stages
1-2 on a prior, then centred on the forecast, preregistered from stage 3). The prior is 4 tokens
per parameter, not Chinchilla's 20: with a 512-piece vocabulary most of a small model's parameters
are its embeddings, and the text sweeps' minima lay at 3-13 tokens per parameter. min_steps is 120
so that the smallest budget's sizes reach above its optimum (d8-d40; with 200 steps only d8-d24 were
feasible and its parabola vertex lay outside them, which keeps that budget out of the frontier law
the forecasts use from stage 4). Batch 8 x 64 tokens: larger batches were no cheaper per token at
these widths on a CPU core. With ~2 M tokens per epoch the small models of the largest budgets
repeat data: the report gives each run's epochs, flags repeats and fits the data-constrained law
when some runs see >= 2 epochs. Figures: BENCHMARKS.md, "the text sweep in 20 minutes".
"""

from experiments.configs import SweepConfig, train_template
from experiments.sweep_sections import AdaptiveConfig, ExecConfig, SizeConfig
from lm.config import DataConfig, ModelConfig, OptimConfig

CORPUS = "corpus:python/jax,flax,optax/3000000"


def get_config() -> SweepConfig:
    return SweepConfig(
        name="text",
        budgets=(3e10, 9.5e10, 3e11, 9.5e11, 3e12),
        convention="6n_attn_causal",
        sizes=SizeConfig(rule="aspect", range=(4e3, 2e6), per_budget=5, window=2.0,
                         tokens_per_param_guess=4.0, aspect=16.0, width_step=8,
                         head_dim=8, min_layers=2, max_layers=2),
        train=train_template(
            model=ModelConfig(vocab_size=512, compute_dtype="float32", parametrization="mup", mup_base_width=8),
            data=DataConfig(source=CORPUS, tokenizer_type="bpe", seq_len=64),
            optim=OptimConfig(learning_rate=0.1, warmup_steps=20, final_lr_frac=0.1),
            batch_size=8,
            eval_batches=8),
        min_steps=120,
        evals_per_run=4,
        checkpoints_per_run=1,
        adaptive=AdaptiveConfig(spread=3.0, max_spread=6.0, edge_sizes=2, max_edge_rounds=2),
        exec=ExecConfig(backend="pool", workers=2, threads=1),
    )
