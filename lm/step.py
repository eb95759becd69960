"""The pure pieces of training: state, loss, train/eval steps, and their sharded compilation.

`train_step(state, batch) -> (state, metrics)` is a pure function. `compile_steps` jits it with
explicit input/output shardings and a donated state (what `pjit` became in current JAX); the state
is built already sharded (`jax.eval_shape` of init -> shardings -> `jax.jit(init, out_shardings)`),
so no full copy ever exists on one device.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any, Callable

import flax
import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from lm import model as model_lib
from lm import sharding as sh
from lm.config import ModelConfig

Batch = Any
LossFn = Callable[[Any, Batch], tuple[jax.Array, jax.Array]]


@flax.struct.dataclass
class TrainState:
    step: jax.Array            # int32 []: optimizer steps taken
    params: Any                # float32 parameter pytree
    opt_state: Any             # optax state
    rng: jax.Array             # uint32 [2]: a raw PRNG key, folded with the step where randomness is needed
    first_bad_step: jax.Array  # int32 []: first step whose loss or gradient was not finite; -1 if none


def lm_loss(params: Any, tokens_BxL1: jax.Array, cfg: ModelConfig) -> tuple[jax.Array, jax.Array]:
    """(mean next-token cross-entropy in nats, number of predicted tokens) of a batch [B, L+1]."""
    inputs_BxL, targets_BxL = tokens_BxL1[:, :-1], tokens_BxL1[:, 1:]
    logits_BxLxV = model_lib.forward(params, inputs_BxL, cfg)
    nll_BxL = optax.softmax_cross_entropy_with_integer_labels(logits_BxLxV, targets_BxL)
    return jnp.mean(nll_BxL), jnp.asarray(nll_BxL.size, jnp.float32)


def split_micro(batch: Batch, grad_accum: int, batch_sharding: NamedSharding | None = None) -> Batch:
    """[B, ...] -> [A, B/A, ...] with micro-batch i = rows i::A (strided), so each micro-batch is
    spread over every device that holds part of the batch (no data moves); `batch_sharding` pins
    that layout (micro-batch axis unsplit, rows split like the batch)."""
    def split(x):
        micro = x.reshape(x.shape[0] // grad_accum, grad_accum, *x.shape[1:]).swapaxes(0, 1)
        if batch_sharding is None:
            return micro
        spec = NamedSharding(batch_sharding.mesh, P(None, *batch_sharding.spec))
        return jax.lax.with_sharding_constraint(micro, spec)
    return jax.tree.map(split, batch)


def make_train_step(loss_fn: LossFn, tx: optax.GradientTransformation, grad_accum: int = 1,
                    batch_sharding: NamedSharding | None = None):
    """A pure `(state, batch) -> (state, metrics)`; with grad_accum > 1 the batch's leading axis is
    split into that many strided micro-batches (`split_micro`) whose gradients are averaged (scan:
    one compiled body)."""

    def grads_of(params, batch):
        (loss, _), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, batch)
        return loss, grads

    def step(state: TrainState, batch: Batch) -> tuple[TrainState, dict[str, jax.Array]]:
        if grad_accum == 1:
            loss, grads = grads_of(state.params, batch)
        else:
            micro = split_micro(batch, grad_accum, batch_sharding)

            def body(carry, mb):
                loss_sum, grad_sum = carry
                if batch_sharding is not None:   # each micro-batch laid out like the batch
                    mb = jax.tree.map(lambda x: jax.lax.with_sharding_constraint(x, batch_sharding), mb)
                loss, grads = grads_of(state.params, mb)
                return (loss_sum + loss, jax.tree.map(jnp.add, grad_sum, grads)), None

            zeros = jax.tree.map(jnp.zeros_like, state.params)
            (loss, grads), _ = jax.lax.scan(body, (jnp.zeros((), jnp.float32), zeros), micro)
            loss = loss / grad_accum
            grads = jax.tree.map(lambda g: g / grad_accum, grads)
        grad_norm = optax.tree.norm(grads)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
        bad = jnp.where((state.first_bad_step < 0) & ~finite, state.step, state.first_bad_step)
        new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state, first_bad_step=bad)
        return new_state, {"loss": loss, "grad_norm": grad_norm}

    return step


def make_eval_step(loss_fn: LossFn):
    """`(params, batch) -> (sum of per-token losses, token count)`, to average over many batches."""

    def step(params, batch):
        loss, count = loss_fn(params, batch)
        return loss * count, count

    return step


@dataclasses.dataclass(frozen=True)
class Compiled:
    """The jitted, sharded functions of a run and the shardings they use."""

    mesh: Mesh
    state_shardings: TrainState
    batch_sharding: NamedSharding
    init: Callable[[jax.Array], TrainState]                   # raw key [2] -> sharded state
    train_step: Callable[[TrainState, Batch], tuple[TrainState, dict]]
    eval_step: Callable[[Any, Batch], tuple[jax.Array, jax.Array]]
    abstract_state: TrainState                                # ShapeDtypeStructs with shardings


def compile_steps(cfg: ModelConfig, tx: optax.GradientTransformation, mesh: Mesh, *,
                  grad_accum: int = 1, loss_fn: LossFn | None = None) -> Compiled:
    """Shardings from the logical axis names, then jit init/step/eval with explicit shardings."""
    if jax.default_backend() == "cpu":  # donation is a no-op on CPU and says so on every call
        warnings.filterwarnings("ignore", message="Some donated buffers were not usable")
    loss_fn = sh.with_mesh(loss_fn or (lambda params, batch: lm_loss(params, batch, cfg)), mesh)
    abstract_params = model_lib.abstract_params(cfg)
    param_sh = sh.param_shardings(abstract_params, model_lib.logical_axes(cfg), mesh)
    abstract_opt = jax.eval_shape(tx.init, abstract_params)
    rep = sh.replicated(mesh)
    state_sh = TrainState(step=rep, params=param_sh,
                          opt_state=sh.opt_state_shardings(tx, abstract_opt, param_sh, mesh),
                          rng=rep, first_bad_step=rep)

    def init(key: jax.Array) -> TrainState:
        params = model_lib.init_params(cfg, key)
        return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                          rng=jax.random.fold_in(key, 1), first_bad_step=jnp.full((), -1, jnp.int32))

    abstract_state = jax.eval_shape(init, jax.random.PRNGKey(0))
    abstract_state = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                                  abstract_state, state_sh)
    batch_sh = sh.batch_sharding(mesh)
    train_step = jax.jit(make_train_step(loss_fn, tx, grad_accum, batch_sh), in_shardings=(state_sh, batch_sh),
                         out_shardings=(state_sh, rep), donate_argnums=0)
    eval_step = jax.jit(make_eval_step(loss_fn), in_shardings=(param_sh, batch_sh), out_shardings=rep)
    return Compiled(mesh=mesh, state_shardings=state_sh, batch_sharding=batch_sh,
                    init=jax.jit(init, out_shardings=state_sh), train_step=train_step,
                    eval_step=eval_step, abstract_state=abstract_state)
