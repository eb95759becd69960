"""The pure pieces of training: state, loss, train/eval steps, and their sharded compilation.

`train_step(state, batch) -> (state, metrics)` is a pure function. `compile_steps` jits it with
explicit input/output shardings and a donated state (what `pjit` became in current JAX); the state
is built already sharded (`jax.eval_shape` of init -> shardings -> `jax.jit(init, out_shardings)`),
so no full copy ever exists on one device.
"""

from __future__ import annotations

import dataclasses
import functools
import warnings
from typing import Any, Callable

import flax
import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from lm import model as model_lib
from lm import sharding as sh
from lm import xla_env
from lm.config import ModelConfig
from lm.precision import dtype_name
from lm.step_blocks import StepBlocks

Batch = Any
LossFn = Callable[[Any, Batch], tuple[jax.Array, jax.Array]]


@flax.struct.dataclass
class TrainState:
    step: jax.Array            # int32 []: optimizer steps taken
    params: Any                # float32 parameter pytree
    opt_state: Any             # optax state
    first_bad_step: jax.Array  # int32 []: first step whose loss or gradient was not finite; -1 if none


def token_nll(logits_BxLxV: jax.Array, targets_BxL: jax.Array) -> jax.Array:
    """-log softmax(logits)[target] per token [B, L], float32: logsumexp minus the target's logit,
    so no [B, L, V] log-probability array is materialised (its gradient is softmax - one_hot)."""
    logits = logits_BxLxV.astype(jnp.float32)
    target_BxL = jnp.take_along_axis(logits, targets_BxL[..., None], axis=-1)[..., 0]
    return jax.nn.logsumexp(logits, axis=-1) - target_BxL


def lm_loss(params: Any, tokens_BxL1: jax.Array, cfg: ModelConfig) -> tuple[jax.Array, jax.Array]:
    """(mean next-token cross-entropy in nats, number of predicted tokens) of a batch [B, L+1]."""
    inputs_BxL, targets_BxL = tokens_BxL1[:, :-1], tokens_BxL1[:, 1:]
    logits_BxLxV = model_lib.forward(params, inputs_BxL, cfg)
    nll_BxL = token_nll(logits_BxLxV, targets_BxL)
    return jnp.mean(nll_BxL), jnp.asarray(nll_BxL.size, jnp.float32)


def seq2seq_loss(params: Any, rows_BxR: jax.Array, cfg: ModelConfig, src_len: int) -> tuple[jax.Array, jax.Array]:
    """Encoder-decoder loss: (mean target cross-entropy in nats, number of scored target tokens).

    rows_BxR = [src (src_len) | tgt (T+1)] (lm.data.paired): the encoder reads src, the decoder reads
    tgt[:, :-1] and is scored on tgt[:, 1:]; target ids < 0 are padding, neither scored nor counted;
    source ids < 0 are padding too, masked out of the encoder's self-attention and the cross-attention.
    """
    src_BxS, tgt_BxT1 = rows_BxR[:, :src_len], rows_BxR[:, src_len:]
    inputs_BxT, targets_BxT = jnp.maximum(tgt_BxT1[:, :-1], 0), tgt_BxT1[:, 1:]
    logits_BxTxV = model_lib.forward(params, inputs_BxT, cfg, src_BxS=jnp.maximum(src_BxS, 0),
                                     src_mask_BxS=src_BxS >= 0)
    nll_BxT = optax.softmax_cross_entropy_with_integer_labels(logits_BxTxV, jnp.maximum(targets_BxT, 0))
    keep_BxT = (targets_BxT >= 0).astype(jnp.float32)
    count = jnp.sum(keep_BxT)
    return jnp.sum(nll_BxT * keep_BxT) / jnp.maximum(count, 1.0), count


def split_micro(batch: Batch, grad_accum: int, batch_sharding: NamedSharding | None = None) -> Batch:
    """[B, ...] -> [A, B/A, ...] with micro-batch i = rows i::A (strided), so each micro-batch is
    spread over every device that holds part of the batch (no data moves); `batch_sharding` pins
    that layout (micro-batch axis unsplit, rows split like the batch)."""
    def split(x):
        micro = x.reshape(x.shape[0] // grad_accum, grad_accum, *x.shape[1:]).swapaxes(0, 1)
        if batch_sharding is None:
            return micro
        return jax.lax.with_sharding_constraint(micro, block_sharding(batch_sharding))
    return jax.tree.map(split, batch)


def _set_learning_rate(opt_state: Any, lr: jax.Array) -> Any:
    """An optax.inject_hyperparams state with its learning rate replaced (same dtype)."""
    if not hasattr(opt_state, "hyperparams") or "learning_rate" not in opt_state.hyperparams:
        raise ValueError("a step with a learning-rate argument needs an optimizer built with "
                         "optax.inject_hyperparams(...)(learning_rate=...); use host_lr=False otherwise")
    old = opt_state.hyperparams["learning_rate"]
    return opt_state._replace(hyperparams={**opt_state.hyperparams,
                                           "learning_rate": jnp.asarray(lr, old.dtype).reshape(old.shape)})


def accumulated_grads(grads_of, params: Any, batch: Batch, grad_accum: int,
                      batch_sharding: NamedSharding | None = None) -> tuple[jax.Array, Any]:
    """(mean loss per token, its gradient) of `batch` from `grad_accum` strided micro-batches
    (`split_micro`), one scanned body: each micro-batch's loss and gradient weighted by its token
    count, the sums divided by the batch's count, so micro-batches that padding left with different
    numbers of tokens weigh what their tokens weigh. `grads_of(params, micro_batch)` returns
    ((mean loss, token count), gradient), as jax.value_and_grad(loss_fn, has_aux=True) does."""
    micro = split_micro(batch, grad_accum, batch_sharding)

    def body(carry, mb):
        loss_sum, count_sum, grad_sum = carry
        if batch_sharding is not None:   # each micro-batch laid out like the batch
            mb = jax.tree.map(lambda x: jax.lax.with_sharding_constraint(x, batch_sharding), mb)
        (loss, count), grads = grads_of(params, mb)
        grad_sum = jax.tree.map(lambda s, g: s + g * count.astype(g.dtype), grad_sum, grads)
        return (loss_sum + loss * count, count_sum + count, grad_sum), None

    zero = jnp.zeros((), jnp.float32)
    (loss, count, grads), _ = jax.lax.scan(body, (zero, zero, jax.tree.map(jnp.zeros_like, params)), micro)
    count = jnp.maximum(count, 1.0)                     # all padding: a zero gradient, not NaN
    return loss / count, jax.tree.map(lambda g: g / count.astype(g.dtype), grads)


def make_train_step(loss_fn: LossFn, tx: optax.GradientTransformation, grad_accum: int = 1,
                    host_lr: bool = False, batch_sharding: NamedSharding | None = None, block: int = 0):
    """A pure `(state, batch) -> (state, metrics)`; with grad_accum > 1 the batch's leading axis is
    split into that many strided micro-batches (`accumulated_grads`, laid out like the batch by
    `batch_sharding`): the full batch's mean per token.

    With `host_lr` the step is `(state, batch, lr) -> ...`: `lr` (float32 []) is this step's learning
    rate, written into the injected hyperparameters inside the compiled step (no state rebuild on
    the host). metrics: loss, grad_norm and first_bad_step (so the loop reads divergence from the
    metrics it fetches one step late, with no extra host sync).

    With `block` > 0 the step reads its inputs from a block of `block` consecutive steps' inputs
    already on the devices (lm.step_blocks.StepBlocks): the batch argument is [block, B, ...] and
    `lr` [block]; it uses the slot of `state.step`, so the loop hands the same device arrays to
    `block` calls and transfers nothing per step."""

    grads_of = jax.value_and_grad(loss_fn, has_aux=True)   # ((mean loss, token count), gradient)

    def one_step(state: TrainState, batch: Batch, lr: jax.Array | None) -> tuple[TrainState, dict[str, jax.Array]]:
        if grad_accum == 1:
            (loss, _), grads = grads_of(state.params, batch)
        else:
            loss, grads = accumulated_grads(grads_of, state.params, batch, grad_accum, batch_sharding)
        grad_norm = optax.tree.norm(grads)
        opt_state = state.opt_state if lr is None else _set_learning_rate(state.opt_state, lr)
        updates, opt_state = tx.update(grads, opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
        bad = jnp.where((state.first_bad_step < 0) & ~finite, state.step, state.first_bad_step)
        new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state, first_bad_step=bad)
        return new_state, {"loss": loss, "grad_norm": grad_norm, "first_bad_step": bad}

    def picked(state: TrainState, batch: Batch, lr: jax.Array | None):
        if not block:
            return one_step(state, batch, lr)
        slot = StepBlocks(block).slot(state.step)
        batch = jax.tree.map(lambda x: jax.lax.dynamic_index_in_dim(x, slot, 0, keepdims=False), batch)
        if batch_sharding is not None:
            batch = jax.tree.map(lambda x: jax.lax.with_sharding_constraint(x, batch_sharding), batch)
        return one_step(state, batch, None if lr is None else lr[slot])

    if host_lr:
        def step(state: TrainState, batch: Batch, lr: jax.Array):   # jit(step) in compile logs
            return picked(state, batch, lr)
    else:
        def step(state: TrainState, batch: Batch):
            return picked(state, batch, None)
    return step


def block_sharding(batch_sharding: NamedSharding) -> NamedSharding:
    """The layout of a block of batches [block, B, ...]: the block axis unsplit, each batch laid
    out like `batch_sharding` (so picking one is local to every device)."""
    return NamedSharding(batch_sharding.mesh, P(None, *batch_sharding.spec))


def make_eval_step(loss_fn: LossFn):
    """`(params, batch) -> (sum of per-token losses, token count)`, to average over many batches."""

    def step(params, batch):
        loss, count = loss_fn(params, batch)
        return loss * count, count

    return step


def check_attention_backend(cfg: ModelConfig, mesh: Mesh) -> None:
    """cuDNN flash attention needs NVIDIA GPUs and bfloat16 compute: say so before compiling."""
    if cfg.attention_impl != "cudnn":
        return
    platform = mesh.devices.flat[0].platform
    if platform != "gpu":
        raise ValueError(f"model.attention_impl='cudnn' needs NVIDIA GPUs but the mesh is on {platform}; "
                         "use attention_impl='einsum' or 'xla'")
    if dtype_name(cfg, platform) != "bfloat16":       # 'auto' is bfloat16 on GPUs
        raise ValueError(f"model.attention_impl='cudnn' needs compute_dtype='bfloat16' (got "
                         f"{cfg.compute_dtype!r}); set it, or use attention_impl='xla'")


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
    block: int = 0                    # > 0: train_step takes blocks of this many steps' inputs
    block_sharding: NamedSharding | None = None               # the layout of such a block of batches


def compile_steps(cfg: ModelConfig, tx: optax.GradientTransformation, mesh: Mesh, *,
                  grad_accum: int = 1, loss_fn: LossFn | None = None, host_lr: bool = False,
                  block: int = 0) -> Compiled:
    """Shardings from the logical axis names, then jit init/step/eval with explicit shardings.
    With `host_lr` the train step takes the step's learning rate as a third argument (see
    make_train_step); `tx` must then be built with optax.inject_hyperparams. With `block` > 0 the
    train step takes blocks of `block` steps' batches (laid out by `Compiled.block_sharding`) and
    learning rates, and picks its own by `state.step` (make_train_step)."""
    if block < 0:
        raise ValueError(f"block={block} must be >= 0 (0: one batch per call)")
    if jax.default_backend() == "cpu":  # donation is a no-op on CPU and says so on every call
        warnings.filterwarnings("ignore", message="Some donated buffers were not usable")
    check_attention_backend(cfg, mesh)
    loss_fn = sh.with_mesh(loss_fn or (lambda params, batch: lm_loss(params, batch, cfg)), mesh)
    abstract_params, logical = model_lib.abstract_params_and_axes(cfg)   # the model's one abstract trace
    param_sh = sh.param_shardings(abstract_params, logical, mesh)
    abstract_opt = jax.eval_shape(tx.init, abstract_params)
    if host_lr:
        _set_learning_rate(abstract_opt, jnp.zeros((), jnp.float32))   # fails now, not inside the jit
    rep = sh.replicated(mesh)
    state_sh = TrainState(step=rep, params=param_sh,
                          opt_state=sh.opt_state_shardings(tx, abstract_opt, param_sh, mesh), first_bad_step=rep)

    def init(key: jax.Array) -> TrainState:
        params = model_lib.init_params(cfg, key)
        return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                          first_bad_step=jnp.full((), -1, jnp.int32))

    scalar = jax.ShapeDtypeStruct((), jnp.int32)
    abstract_state = TrainState(step=scalar, params=abstract_params, opt_state=abstract_opt, first_bad_step=scalar)
    abstract_state = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                                  abstract_state, state_sh)
    batch_sh = sh.batch_sharding(mesh)
    fed_sh = block_sharding(batch_sh) if block else batch_sh
    in_sh = (state_sh, fed_sh, rep) if host_lr else (state_sh, fed_sh)
    options = functools.partial(xla_env.compile_options, mesh.devices.flat[0].platform)  # CPU: -O2, ...
    lowp = dtype_name(cfg, mesh.devices.flat[0].platform) != "float32"   # bf16 dots: lm.dots
    train_program = "train_step_lowp" if lowp else "train_step"
    train_step = jax.jit(make_train_step(loss_fn, tx, grad_accum, host_lr, batch_sh, block), in_shardings=in_sh,
                         out_shardings=(state_sh, rep), donate_argnums=0, compiler_options=options(train_program))
    eval_step = jax.jit(make_eval_step(loss_fn), in_shardings=(param_sh, batch_sh), out_shardings=rep,
                        compiler_options=options("eval_step"))
    return Compiled(mesh=mesh, state_shardings=state_sh, batch_sharding=batch_sh,
                    init=jax.jit(init, out_shardings=state_sh, compiler_options=options("init")), train_step=train_step,
                    eval_step=eval_step, abstract_state=abstract_state, block=block,
                    block_sharding=fed_sh if block else None)
