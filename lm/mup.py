"""muP (Yang et al. 2022, Tensor Programs V): the width multipliers of one ModelConfig.

Under `parametrization='mup'` a model of width d = d_model is described relative to a base width
b = mup_base_width through the width multiplier m = d / b (b divides d, so m >= 1 is a whole
number). With Adam, the muP rules of the paper's Table 8 (the "output multiplier" form, the one the
`mup` package implements) are:

| parameters                                   | init std            | Adam learning rate | forward         |
|----------------------------------------------|---------------------|--------------------|-----------------|
| token / position embeddings (input weights)  | init_std            | lr                 |                 |
| hidden matrices (q, k, v, out, MLP)          | init_std / sqrt(m)  | lr / m             |                 |
| unembedding (output weights)                 | init_std            | lr                 | logits x mult/m |
| norm scales, biases (vector-like)            | as standard         | lr                 |                 |

and attention logits q.k / head_dim instead of q.k / sqrt(head_dim). The residual-branch output
projections keep their depth factor 1 / sqrt(2 n_layers) (depth is not what muP transfers). At
m = 1 every init and learning rate equals the standard parametrisation's; only the attention scale
differs. So a learning rate tuned at the base width carries over to every width (hyperparameter
transfer), which `lm-sweep run mup_transfer` measures.

Under the standard parametrisation every function here returns the standard value exactly, so
the standard path's numbers do not change.
"""

from __future__ import annotations

import math
from typing import Any

from lm.config import ModelConfig

EMBED_MODULES = ("embed", "pos_embed")
"""Modules of input weights (learning rate and init not scaled with width)."""
OUTPUT_MODULES = ("unembed",)
"""Modules of output weights (learning rate not scaled; the logits carry the 1/m multiplier)."""


def is_mup(cfg: ModelConfig) -> bool:
    return cfg.parametrization == "mup"


def width_mult(cfg: ModelConfig) -> float:
    """m = d_model / mup_base_width under muP; 1 under the standard parametrisation."""
    return cfg.d_model / cfg.mup_base_width if is_mup(cfg) else 1.0


def hidden_std(cfg: ModelConfig) -> float:
    """Init std of the hidden matrices (q, k, v, attention out and MLP, before the depth factor)."""
    return cfg.init_std / math.sqrt(width_mult(cfg)) if is_mup(cfg) else cfg.init_std


def query_scale(cfg: ModelConfig) -> float | None:
    """Extra factor on the queries that turns q.k / sqrt(E) into q.k / E (muP); None = none."""
    return 1.0 / math.sqrt(cfg.head_size) if is_mup(cfg) else None


def logit_mult(cfg: ModelConfig) -> float | None:
    """Factor on the output logits, mup_output_mult / m (muP); None = none (standard)."""
    return cfg.mup_output_mult / width_mult(cfg) if is_mup(cfg) else None


def is_hidden_matrix(names: list[str]) -> bool:
    """Whether the parameter at this path (module names, leaf name last) is a hidden matrix."""
    return (bool(names) and names[-1] == "kernel"
            and not set(names) & set(EMBED_MODULES + OUTPUT_MODULES))


def lr_mult(cfg: ModelConfig, names: list[str]) -> float:
    """Adam learning-rate multiplier of the parameter at this path: 1/m for hidden matrices under
    muP, 1 otherwise."""
    return 1.0 / width_mult(cfg) if is_mup(cfg) and is_hidden_matrix(names) else 1.0


def group_learning_rates(cfg: ModelConfig, learning_rate: float) -> dict[str, float]:
    """The peak Adam learning rate of each parameter group, for records and reports."""
    return {"embedding": learning_rate, "hidden": learning_rate / width_mult(cfg) if is_mup(cfg) else learning_rate,
            "output": learning_rate, "vector": learning_rate}


def describe(cfg: ModelConfig) -> dict[str, Any]:
    """The parametrisation in numbers (what the results table records beside each run)."""
    return {"parametrization": cfg.parametrization, "width_mult": width_mult(cfg),
            "hidden_init_std": hidden_std(cfg), "logit_mult": logit_mult(cfg) or 1.0}
