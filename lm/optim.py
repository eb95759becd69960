"""The optimizer: global-norm clipping, then AdamW with a learning-rate schedule and a decay mask.

Schedules are pure functions `step -> learning rate` (optax.Schedule) that work on Python ints
and traced int32 step counts alike. optax evaluates the schedule at the update count *before*
the update, so the first optimizer step uses `schedule(0)`; with a warmup that is 0, as in optax's
own warmup schedules and the Chinchilla recipe.

Shapes of the schedules (peak = cfg.learning_rate, final = cfg.final_lr_frac * peak,
W = cfg.warmup_steps, T = total_steps; the warmup is linear 0 -> peak over [0, W] for all):
- 'cosine':   half a cosine from peak at W to final at T (the cycle is the run, Chinchilla).
- 'wsd':      warmup, stable at peak, then decay over the last decay_frac * T steps to final with
              decay_shape 'linear' (1 - p), 'cosine' (0.5 (1 + cos pi p)) or 'sqrt' (1 - sqrt p),
              p the fraction of the decay done (Hagele et al. 2024). If the warmup reaches into the
              decay window, the decay starts when the warmup ends.
- 'constant': peak after the warmup.
- 'linear':   straight line from peak at W to final at T.
After T every schedule stays at its value at T.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

from lm import mup
from lm.config import ModelConfig, OptimConfig

NO_DECAY_MODULES = ("embed", "pos_embed")
"""Modules whose parameters are never decayed by default (embedding tables)."""
DECAY_LEAF_NAMES = ("kernel",)
"""Leaf names that are decayed by default: the weight matrices of Dense layers."""


# ---------------------------------------------------------------------------------------------
# Schedules.

def _decay_curve(shape: str, p: jax.Array) -> jax.Array:
    """Fraction of the way from final (0) to peak (1) left after a fraction p in [0, 1] of the decay."""
    if shape == "linear":
        return 1.0 - p
    if shape == "cosine":
        return 0.5 * (1.0 + jnp.cos(jnp.pi * p))
    if shape == "sqrt":
        return 1.0 - jnp.sqrt(p)
    raise ValueError(f"decay shape {shape!r} is not known; pick 'linear', 'cosine' or 'sqrt'")


def _piecewise(cfg: OptimConfig, decay_start: int | None, decay_end: int, shape: str) -> optax.Schedule:
    """Warmup 0 -> peak over [0, W], peak until decay_start, `shape` down to final at decay_end.

    decay_start None means no decay (constant after the warmup). decay_start >= W and
    decay_end >= decay_start are the caller's to guarantee.
    """
    peak, final_frac, warmup = cfg.learning_rate, cfg.final_lr_frac, cfg.warmup_steps
    decay_len = max(decay_end - (decay_start or 0), 1)

    def schedule(step: Any) -> jax.Array:
        step = jnp.asarray(step, jnp.float32)
        warm = step / warmup if warmup > 0 else jnp.ones_like(step)
        if decay_start is None:
            after = jnp.ones_like(step)
        else:
            p = jnp.clip((step - decay_start) / decay_len, 0.0, 1.0)
            after = final_frac + (1.0 - final_frac) * _decay_curve(shape, p)
        return peak * jnp.where(step < warmup, warm, after)

    return schedule


def _check_steps(cfg: OptimConfig, total_steps: int) -> None:
    if total_steps <= 0:
        raise ValueError(f"total_steps={total_steps} must be positive")
    if cfg.warmup_steps > total_steps:
        raise ValueError(f"warmup_steps={cfg.warmup_steps} is longer than the run (total_steps="
                         f"{total_steps}); lower warmup_steps to at most {total_steps}")


def make_schedule(cfg: OptimConfig, total_steps: int) -> optax.Schedule:
    """The learning rate at each optimizer step of a run of `total_steps` steps (module docstring)."""
    cfg.validate()
    _check_steps(cfg, total_steps)
    warmup = cfg.warmup_steps
    if cfg.schedule == "cosine":
        return _piecewise(cfg, warmup, total_steps, "cosine")
    if cfg.schedule == "linear":
        return _piecewise(cfg, warmup, total_steps, "linear")
    if cfg.schedule == "constant":
        return _piecewise(cfg, None, total_steps, "linear")
    decay_steps = max(1, round(cfg.decay_frac * total_steps))
    return _piecewise(cfg, max(warmup, total_steps - decay_steps), total_steps, cfg.decay_shape)


def wsd_cooldown_schedule(cfg: OptimConfig, branch_step: int, cooldown_steps: int) -> optax.Schedule:
    """A cooldown branched from a constant-LR run at `branch_step`, lasting `cooldown_steps`.

    Up to branch_step it equals make_schedule(cfg with schedule='constant', ...) exactly (the same
    warmup, then peak), so a checkpoint of the constant run at branch_step resumes under it
    unchanged (the optimizer state does not depend on the schedule: build the optimizer with
    `make_optimizer(cfg, total, schedule=wsd_cooldown_schedule(...))`). From branch_step it
    decays with cfg.decay_shape to final_lr_frac * peak at branch_step + cooldown_steps and stays
    there. One constant run plus one cooldown per budget gives a whole loss-vs-tokens curve of
    WSD runs (Hagele et al. 2024). cfg.schedule and cfg.decay_frac are not used.
    """
    cfg.validate()
    if cooldown_steps <= 0:
        raise ValueError(f"cooldown_steps={cooldown_steps} must be positive")
    if branch_step < cfg.warmup_steps:
        raise ValueError(f"branch_step={branch_step} falls inside the warmup ({cfg.warmup_steps} "
                         f"steps); branch at step >= {cfg.warmup_steps}")
    return _piecewise(cfg, branch_step, branch_step + cooldown_steps, cfg.decay_shape)


def learning_rate_at(cfg: OptimConfig, total_steps: int, step: int) -> float:
    """make_schedule(cfg, total_steps)(step) as a Python float, for logging."""
    return float(make_schedule(cfg, total_steps)(step))


# ---------------------------------------------------------------------------------------------
# Weight-decay mask and the optimizer.

def _path_names(path: tuple[Any, ...]) -> list[str]:
    """Names along a pytree path: dict keys and attribute names ('value' of boxed leaves dropped)."""
    names = []
    for entry in path:
        if isinstance(entry, jax.tree_util.DictKey):
            names.append(str(entry.key))
        elif isinstance(entry, jax.tree_util.GetAttrKey) and entry.name != "value":
            names.append(entry.name)
    return names


def _decays(names: list[str]) -> bool:
    return bool(names) and names[-1] in DECAY_LEAF_NAMES and not set(names) & set(NO_DECAY_MODULES)


def decay_mask(params: Any, cfg: OptimConfig) -> Any:
    """A pytree of bools like `params`: True where weight decay applies.

    Decided by path names, never by ndim (scanned layers add a leading layer axis to every leaf):
    a leaf decays iff it is named 'kernel' and no module on its path is 'embed' or 'pos_embed'.
    So norm scales/biases, projection biases and embedding tables are not decayed; the
    unembedding matrix is. With cfg.decay_norms_biases_embeddings every leaf decays.
    """
    if cfg.decay_norms_biases_embeddings:
        return jax.tree_util.tree_map(lambda _: True, params)
    return jax.tree_util.tree_map_with_path(lambda path, _: _decays(_path_names(path)), params)


def lr_multipliers(params: Any, model: ModelConfig) -> Any:
    """A pytree of floats like `params`: each leaf's Adam learning-rate multiplier (lm.mup.lr_mult:
    1 / width_mult for hidden matrices under muP, 1 elsewhere and under the standard
    parametrisation). Decided by path names, like the decay mask."""
    return jax.tree_util.tree_map_with_path(lambda path, _: mup.lr_mult(model, _path_names(path)), params)


def scale_per_leaf(model: ModelConfig) -> optax.GradientTransformation:
    """Stateless: multiply each leaf's update by its learning-rate multiplier (lr_multipliers)."""

    def update(updates, state, params=None):
        del params
        mults = lr_multipliers(updates, model)
        return jax.tree.map(lambda u, m: u if m == 1.0 else u * jnp.asarray(m, u.dtype), updates, mults), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def make_optimizer(cfg: OptimConfig, total_steps: int, schedule: optax.Schedule | None = None,
                   model: ModelConfig | None = None) -> optax.GradientTransformation:
    """clip_by_global_norm(clip_norm) (if set), then AdamW with decoupled, masked weight decay.

    The update of a decayed leaf is -lr(t) * g * (adam_direction + weight_decay * param), with lr(t)
    from `schedule` (default make_schedule(cfg, total_steps)) and g the leaf's group multiplier:
    1 unless `model` uses muP, where hidden matrices get g = 1 / width_mult on the Adam direction
    only (per-parameter-group Adam learning rates, lm/mup.py): their update is
    -lr(t) * (adam_direction / width_mult + weight_decay * param), so the decay per step,
    lr * weight_decay, is the same at every width, as in the reference muP (microsoft/mup's MuAdamW
    divides a group's lr by width_mult and multiplies its weight_decay by it). Without a muP model
    this is optax.adamw itself. Gradient accumulation happens in the train step
    (cfg.grad_accum is not used here).
    """
    cfg.validate()
    if schedule is None:
        schedule = make_schedule(cfg, total_steps)
    mask: Callable[[Any], Any] = lambda params: decay_mask(params, cfg)
    if model is not None and mup.is_mup(model):
        adamw = optax.chain(optax.scale_by_adam(b1=cfg.b1, b2=cfg.b2, eps=cfg.eps),
                            scale_per_leaf(model), optax.add_decayed_weights(cfg.weight_decay, mask),
                            optax.scale_by_learning_rate(schedule))
    else:
        adamw = optax.adamw(learning_rate=schedule, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps,
                            weight_decay=cfg.weight_decay, mask=mask)
    if cfg.clip_norm is None:
        return adamw
    return optax.chain(optax.clip_by_global_norm(cfg.clip_norm), adamw)
