"""Encoder vs decoder size on the synthetic translation task: `lm-sweep run encdec`.

Ghorbani et al. 2021 fit L(N_e, N_d) = beta (N_e/N_e_ref)^-p_e (N_d/N_d_ref)^-p_d + L_inf over
encoder and decoder sizes varied separately. Here: encoder depths 1, 2, 4 x decoder depths 1, 2, 4 at
width 16 (one d_model: encoder and decoder share it, so their sizes move apart through depth), each
trained for the same number of steps on the noisy-channel translation task (lm/data/paired.py,
vocabulary 256, noise 0.1: a dictionary of 255 words to learn, whose exact floor the report prints).
9 runs; the report fits the law, gives p_e and p_d with bootstrap intervals (or says why the data
cannot identify them) and plots loss against each side's size (plots/encdec.png).
"""

from experiments.configs import EncDecConfig, ExecConfig, SizeConfig, SweepConfig
from lm.config import DataConfig, ModelConfig, OptimConfig


def get_config() -> SweepConfig:
    return SweepConfig(
        name="encdec",
        convention="6n",
        sizes=SizeConfig(targets=(1e4,), head_dim=8, ff_mult=4),
        model=ModelConfig(vocab_size=256, n_encoder_layers=1, positions="learned", compute_dtype="float32"),
        data=DataConfig(source="translation", synthetic_vocab=256, translation_noise=0.1),
        optim=OptimConfig(learning_rate=1e-2, warmup_steps=20, final_lr_frac=0.1),
        encdec=EncDecConfig(encoder_layers=(1, 2, 4), decoder_layers=(1, 2, 4), widths=(16,), steps=300),
        batch_size=16,
        seq_len=16,
        min_steps=100,
        evals_per_run=2,
        eval_batches=4,
        checkpoints_per_run=1,
        exec=ExecConfig(backend="pool", workers=2, threads=1),
    )
