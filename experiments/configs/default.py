"""The main job (`make sweep`): an adaptive IsoFLOP sweep on the built-in synthetic language.

Adaptive design (experiments.adaptive): the 6 budgets train in ascending stages; stages 1-2 are
centred on the prior of 50 tokens per parameter, every later stage on the forecast of N_opt(C)
from the stages before it (preregistered in forecasts.jsonl from stage 3 on), and a stage whose
parabola minimum falls at an edge of its sizes adds sizes on that side before the next stage. The
sizes come from one ladder over 2e3..1.2e6 parameters (ratio window^(2/(per_budget-1)) = 1.32, at these
widths every d_model step of 4): 6 per stage over the spread N*/3 .. 3 N*, or every feasible rung where
there are fewer (the smallest budget trains 5: d8-d24, the shapes that get >= 200 steps). On two seeds,
6 sizes (5 before, on a sqrt(2) ladder) cut Approach 3's walk-forward misses of later budgets' optima
from 4.3-5.8 % to 2.5-3.7 %, for 10 more runs, about a minute.
Stages 1-2 train every size with 3 seeds, stages 3-5 with 2 and stage 6 with 1
(adaptive.seeds_first_stages, adaptive.seeds_later_stages; replicas '<id>-s1', '<id>-s2' vary the
init and the data stream) and the fits use their mean: one run's loss moves by up to 0.12 nats with
its seed at these budgets, and the runs of one budget share much of that shift, which more sizes
cannot average away. Every forecast rests on the minima of the stages before it; the largest
budget's minimum serves no later forecast, so it trains one seed (a second would add ~2 minutes).
The measurements below are of the fixed-grid design this replaced (sizes.window=3.0, range to 4e5).

6 budgets from 1.6e10 to 1.6e12 training FLOPs (100x), counted in real compute: '6n_attn_causal'
(6N plus the causal attention scores, which add 7-39 % to 6N at seq 64 for these shapes; the results
table keeps every convention's C). 5 sizes per budget from one ladder of width-only shapes at depth 2
(d8-L2 .. d80-L2, 2.6K-210K non-embedding parameters), centred on a guess of 50 tokens per parameter.
Depth is fixed because muP transfers the learning rate across width, not depth.

Learning rate per size through muP (train.model.parametrization='mup'; mup_base_width=4 divides every
width): embeddings and unembedding train at the base rate, hidden matrices at base / (d_model / 4),
logits x 4 / d_model. One base rate, 0.2, tuned once with `lm-sweep run mup_transfer` (300-step runs at
depth 2), for every run. The horizon rule (SweepConfig `lr_horizon_steps`, `lr_horizon_exponent`)
was tried twice, exponent 0.5 (2026-11-30) and 0.3 (2026-12-06, a whole adaptive sweep): it gave no
consistent gain at long horizons (the 8 runs of >= 4,000 steps: -0.056 .. +0.033 nats against one
rate, mean -0.007) nor at the budgets' minima beyond the noise of one run (up to 4 %: other seeds, or
0.5-4 % changes of the rate, move a run's loss by 0.03-0.10 nats at these batch sizes), its fitted E
fell to 1.22 (floor 1.34), so the default keeps one rate. float32 compute: bfloat16 was no faster at these widths on
the CPU it was measured on. No weight decay: the data are fresh samples of an unbounded language
(nothing to over-fit), and under the reference muP decay (lr x wd at every width) the former 0.1
decays every hidden matrix by 2 % a step at the base rate 0.2, which stalls the larger budgets.

What the sweep gives (wall time, forecast error, exponents, E against the floor) and the runs behind
each choice above: BENCHMARKS.md, "The main job".
"""

from experiments.configs import SweepConfig, train_template
from experiments.sweep_sections import AdaptiveConfig, ExecConfig, SizeConfig
from lm.config import DataConfig, ModelConfig, OptimConfig


def get_config() -> SweepConfig:
    return SweepConfig(
        name="default",
        budgets=(1.6e10, 4e10, 1e11, 2.5e11, 6.3e11, 1.6e12),
        convention="6n_attn_causal",
        sizes=SizeConfig(rule="aspect", range=(2e3, 1.2e6), per_budget=6, window=2.0,
                         tokens_per_param_guess=50.0, aspect=16.0, width_step=4,
                         head_dim=8, min_layers=2, max_layers=2),
        train=train_template(
            model=ModelConfig(vocab_size=64, compute_dtype="float32", parametrization="mup", mup_base_width=4),
            data=DataConfig(seq_len=64),
            optim=OptimConfig(learning_rate=0.2, warmup_steps=20, final_lr_frac=0.1, weight_decay=0.0),
            batch_size=8,
            eval_batches=8),
        min_steps=200,
        evals_per_run=4,
        checkpoints_per_run=1,
        adaptive=AdaptiveConfig(spread=3.0, max_spread=6.0, edge_sizes=2, max_edge_rounds=2, seeds_first_stages=3,
                                seeds_later_stages=(2, 2, 2, 1)),
        exec=ExecConfig(backend="pool", workers=2, threads=1),
    )
