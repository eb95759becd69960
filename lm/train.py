"""Train one model: `train(TrainConfig) -> result dict`, and the `lm-train` command.

The recipe: validate the config against the devices -> build the data -> mesh and optimizer ->
compile the sharded steps -> resume from the newest checkpoint (weights, optimizer, step and
data position) or initialise -> loop (step, log one step late, evaluate, checkpoint) -> result.json.
A resumed run continues bit-identically. A NaN/Inf loss or gradient stops the run as `diverged`.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import sys
import time
from typing import TYPE_CHECKING, Any

import jax
import numpy as np

from lm import sigint
from lm import flops as flops_lib
from lm.checkpoint import Checkpoints
from lm.distributed import broadcast_json
from lm.config import RESUME_CHANGES, MeshConfig, ModelConfig, OptimConfig, TrainConfig
from lm.config_fields import differences, from_dict, to_dict, with_field_defaults
from lm.config_io import apply_overrides, help_config_action, load_train_config
from lm.io import atomic_write_json
from lm.lock import FolderLock
from lm.metrics import MetricsWriter, read_eval_curve
from lm.optim import learning_rate_at, make_optimizer, make_schedule
from lm.sharding import make_mesh, replicated
from lm.step import Compiled, compile_steps
from lm.step_blocks import StepBlocks

if TYPE_CHECKING:
    from lm.data.pipeline import BatchStream, Dataset

def _check_resumable(cfg: TrainConfig) -> None:
    """Refuse to resume a run directory written by a different config: the one its config.json
    records or, without one, the one its newest checkpoint carries (nothing is touched)."""
    old, source = _recorded_config(cfg.out_dir)
    if old is None:
        return
    new = json.loads(json.dumps(to_dict(cfg)))
    diff = differences(with_field_defaults(old, cfg, new), new, RESUME_CHANGES)
    if diff:
        raise ValueError(f"{cfg.out_dir} holds a run with a different config (fields {diff} differ from "
                         f"{source}); resume with the same config or choose a new out_dir")


def _recorded_config(out_dir: str) -> tuple[dict[str, Any] | None, str]:
    """(the config a run folder was trained with, where it was read) or (None, '') for a new folder."""
    from lm.checkpoint import newest_meta
    from lm.records import read_json_object
    path = os.path.join(out_dir, "config.json")
    old = read_json_object(path, "it records the run's config: delete it to resume with the config the "
                                 "run's checkpoints carry, or choose a new out_dir")
    if old is not None:
        return old, path
    found = newest_meta(os.path.join(out_dir, "checkpoints"))
    if found is None:
        return None, ""
    return found[1]["config"], f"the config checkpoint step {found[0]} carries (config.json is missing)"


def _build_data(cfg: TrainConfig, batch_sharding):
    """(train dataset, eval dataset, train stream, eval stream); each stream loads the rows of the
    global batch that this process's devices hold under `batch_sharding` (any mesh)."""
    from lm.data.pipeline import BatchStream, build_dataset, process_rows

    train_ds = build_dataset(cfg.data, cfg.data.train_split, vocab_size_hint=cfg.model.vocab_size,
                             workdir=cfg.out_dir)
    eval_ds = build_dataset(cfg.data, cfg.data.eval_split, vocab_size_hint=cfg.model.vocab_size,
                            workdir=cfg.out_dir)
    for ds in (train_ds, eval_ds):
        if ds.vocab_size > cfg.model.vocab_size:
            raise ValueError(f"data {ds.name} has {ds.vocab_size} token ids but the model's vocab_size is "
                             f"{cfg.model.vocab_size}; set model.vocab_size >= {ds.vocab_size}")
    rows = process_rows(batch_sharding, (cfg.batch_size, cfg.data.seq_len + 1))
    train = BatchStream(train_ds, cfg.batch_size, cfg.data.seq_len, cfg.data.seed, rows)
    evals = BatchStream(eval_ds, cfg.batch_size, cfg.data.seq_len, cfg.data.seed + 1, rows)
    return train_ds, eval_ds, train, evals


def _loss_fn(model: ModelConfig, src_len: int):
    """None (next-token loss) for decoder-only models; the target-only seq2seq loss for
    encoder-decoders (sources of `src_len` tokens)."""
    if not model.n_encoder_layers:
        return None
    from lm.step import seq2seq_loss
    return lambda params, rows: seq2seq_loss(params, rows, model, src_len)


def _has_checkpoint(folder: str) -> bool:
    return os.path.isdir(folder) and any(name.isdigit() for name in os.listdir(folder))


def _branch_source(cfg: TrainConfig) -> tuple[Checkpoints, int]:
    """The init_from run's checkpoints (read-only) and step, checked to hold a model of this shape."""
    run_dir, _, step = cfg.init_from.rpartition("@")
    folder = os.path.join(run_dir, "checkpoints")
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"init_from: {run_dir} has no checkpoints folder; train that run first")
    source = Checkpoints(folder, read_only=True)
    if int(step) not in source.all_steps():
        steps = source.all_steps()
        source.close()
        raise FileNotFoundError(f"init_from: {run_dir} has no checkpoint at step {step} (it has {steps}); "
                                "save one there with checkpoint_every")
    try:
        _check_same_shape(cfg, _source_config(run_dir, source, int(step)), run_dir)
    except BaseException:
        source.close()
        raise
    return source, int(step)


def _source_config(run_dir: str, source: Checkpoints, step: int) -> TrainConfig:
    from lm.records import read_json_object
    saved = read_json_object(os.path.join(run_dir, "config.json"),
                             "it records that run's config: restore it, or delete it to use the config its "
                             "checkpoints carry")
    if saved is not None:
        return from_dict(TrainConfig, saved)
    return from_dict(TrainConfig, source.restore_meta(step)["config"])


def _check_same_shape(cfg: TrainConfig, src: TrainConfig, run_dir: str) -> None:
    """Refuse init_from a run whose parameters (or optimizer-state layout) differ from this run's,
    naming the fields that differ."""
    from lm.model import abstract_params

    def shapes(model):
        return jax.tree.map(lambda a: (a.shape, str(a.dtype)), abstract_params(model))

    mine, theirs = to_dict(cfg.model), to_dict(src.model)
    fields = [f"model.{k}={theirs[k]!r} here {mine[k]!r}" for k in sorted(mine) if mine[k] != theirs.get(k)]
    same = shapes(cfg.model) == shapes(src.model)
    if cfg.schedule_on_host != src.schedule_on_host:
        fields.append(f"schedule_on_host={src.schedule_on_host} here {cfg.schedule_on_host}")
        same = False
    if not same:
        raise ValueError(f"init_from: {run_dir} is a run of another shape ({', '.join(fields)}); its "
                         "checkpoint cannot start this run: branch from a run with the same model")


def _check_out_dir(path: str) -> None:
    """out_dir must be a folder that exists or can be created and written (checked, nothing created).
    A URL (gs://...) is refused: the run folder's lock, config, metrics and result are files on a
    filesystem, and only the checkpoints could follow a URL (issue 26: the run came apart in two)."""
    if "://" in path:
        raise ValueError(f"out_dir {path} is a URL, but a run folder (its lock, config.json, metrics.jsonl, "
                         "result.json and checkpoints) must be on a filesystem: use a local or shared path, "
                         "e.g. a bucket mounted with gcsfuse")
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"out_dir {path} is an existing file, not a folder; pick another out_dir")
    probe = os.path.abspath(path)
    while not os.path.exists(probe):
        probe = os.path.dirname(probe)
    if not os.path.isdir(probe) or not os.access(probe, os.W_OK | os.X_OK):
        raise ValueError(f"out_dir {path} cannot be written ({probe} is not a writable folder); "
                         "pick an out_dir you can write to")


def _finished(cfg: TrainConfig) -> dict[str, Any] | None:
    """result.json of this run when it already finished (same config): a rerun changes nothing."""
    from lm.io import truncate_torn_tail
    path = os.path.join(cfg.out_dir, "result.json")
    try:
        with open(path) as f:
            result = json.load(f)
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    if result.get("status") not in ("completed", "diverged") or result.get("steps") is None:
        return None
    if result["status"] == "completed" and result["steps"] != cfg.steps:
        return None
    if jax.process_index() == 0:
        truncate_torn_tail(os.path.join(cfg.out_dir, "metrics.jsonl"))
    return result


def _optimizer(cfg: TrainConfig):
    """(optimizer, per-step learning rates or None). With cfg.schedule_on_host the rate is a
    hyperparameter in the optimizer state, set from the host table before each step, so nothing in
    the compiled step depends on cfg.steps (one compilation per shape across a sweep)."""
    return _transformation(cfg.optim, cfg.model, None if cfg.schedule_on_host else cfg.steps), _lr_table(cfg)


_LR_BLOCK = 4096
"""Steps per evaluation of a host-fed schedule (a fixed shape: compiled once per process, whatever
the run's length)."""


def _lr_table(cfg: TrainConfig) -> np.ndarray | None:
    """float32 [steps]: the learning rate of each step when the schedule is fed from the host, else None."""
    if not cfg.schedule_on_host:
        return None
    schedule = make_schedule(cfg.optim, cfg.steps)     # evaluated in blocks of one shape: its eager ops
    blocks = [schedule(np.arange(s, s + _LR_BLOCK)) for s in range(0, cfg.steps, _LR_BLOCK)]  # compile once
    return np.asarray(np.concatenate([np.asarray(b, np.float32) for b in blocks]))[:cfg.steps]


def _transformation(optim: OptimConfig, model: ModelConfig, steps: int | None):
    """The run's optimizer; steps None: its learning rate is an injected hyperparameter (fed from
    the host each step), so it does not depend on the run's length."""
    if steps is not None:
        return make_optimizer(optim, steps, model=model)
    import optax
    return optax.inject_hyperparams(lambda learning_rate: make_optimizer(
        optim, 1, schedule=learning_rate, model=model))(learning_rate=optim.learning_rate)


@functools.lru_cache(maxsize=8)
def _steps_for(model: ModelConfig, optim: OptimConfig, mesh: MeshConfig, seq_len: int,
               steps: int | None, block: int = 0) -> Compiled:
    """The sharded step functions of runs with this model, optimizer, mesh and sequence length
    (steps None: a host-fed schedule, whatever the run's length; block: the train step's inputs
    come in blocks of that many steps, lm.step). Cached: a sweep worker's runs of one shape share
    them, so each shape is traced, lowered and compiled once per process (jax's caches then hit),
    not once per run."""
    return compile_steps(model, _transformation(optim, model, steps), make_mesh(mesh), grad_accum=optim.grad_accum,
                         loss_fn=_loss_fn(model, seq_len), host_lr=steps is None, block=block)


_BLOCK_TOKENS = 2 ** 20
"""Token ids per block of training batches on the devices (4 MiB of int32; at most 64 steps)."""


def block_size(batch_size: int, seq_len: int) -> int:
    """Steps per block of training inputs (lm.step): up to 64, fewer for large batches (a block of
    [steps, batch_size, seq_len + 1] token ids holds at most ~_BLOCK_TOKENS of them)."""
    return min(64, max(1, _BLOCK_TOKENS // (batch_size * (seq_len + 1))))


class _Blocks:
    """The train step's inputs a block of steps at a time (`layout`, lm.step_blocks): the block's
    batches drawn with one call into the dataset and put on the devices in one transfer
    (`BatchStream.device_block`), with their learning rates [size] when the schedule is fed from
    the host; the loop passes the same arrays to each of the block's steps, and nothing moves to
    the devices per step."""

    def __init__(self, stream: BatchStream, compiled: Compiled, lr_table: np.ndarray | None):
        self.stream, self.layout, self.lr_table = stream, StepBlocks(compiled.block), lr_table
        self.sharding, self.replicated = compiled.block_sharding, replicated(compiled.mesh)

    def inputs(self, step: int, stop: int) -> tuple:
        """(batches,) or (batches, learning rates): the block holding `step`, filled from `step`
        up to its end or `stop` (the run's last step), whichever comes first."""
        first, end = self.layout.first(step), self.layout.fill(step, stop)
        batches = self.stream.device_block(step, end, self.layout, self.sharding)
        if self.lr_table is None:
            return (batches,)
        lrs = np.zeros(self.layout.size, np.float32)      # a finished run resumes at `steps`: the last rate
        lrs[step - first:end - first] = self.lr_table[np.minimum(np.arange(step, end), len(self.lr_table) - 1)]
        from lm.data.pipeline import to_device
        return batches, to_device(lrs, self.replicated)


def evaluate(compiled, params, eval_batches: list[jax.Array]) -> float:
    """Mean per-token loss over a fixed list of held-out device batches: every batch dispatched,
    then one fetch of their (sum, count) pairs, added on the host in float64."""
    sums = np.asarray(jax.device_get([compiled.eval_step(params, batch) for batch in eval_batches]), np.float64)
    return float(sums[:, 0].sum() / sums[:, 1].sum())


def train(cfg: TrainConfig, *, restart: bool = False, lock_wait_s: float = 0.0) -> dict[str, Any]:
    """Train (or resume) the run in cfg.out_dir; returns and writes `result.json`.

    Everything about the input is checked before anything is created: the config (types, values,
    devices), out_dir, an init_from source's shape, the memory estimate. Then the run folder is
    locked (one writer: a second process fails at once naming the holder, or waits up to
    `lock_wait_s`). A finished run is returned as it is. A run resumes from its newest intact
    checkpoint; when every checkpoint it had is corrupt it stops, unless `restart` (start over)."""
    from lm.memory import check_fits
    from lm.precision import resolve_train_config

    cfg.validate(jax.device_count())
    _check_out_dir(cfg.out_dir)
    cfg, choice = resolve_train_config(cfg)   # 'auto' -> the recorded or table dtype
    check_fits(cfg, jax.device_count())
    _check_resumable(cfg)
    if cfg.init_from is not None and not _has_checkpoint(os.path.join(cfg.out_dir, "checkpoints")):
        _branch_source(cfg)[0].close()  # fail before anything is written
    if jax.process_index() != 0:       # process 0 holds the lock and decides; all follow its decision
        return _follow(broadcast_json(None)) or _train(cfg, restart, choice.record())
    lock = FolderLock(cfg.out_dir, "run folder", wait_s=lock_wait_s)
    try:
        lock.acquire()
        _check_resumable(cfg)           # another writer may have started it meanwhile
        decision = {"finished": _finished(cfg)}
    except BaseException as e:
        lock.release()
        broadcast_json({"error": str(e)})   # the other processes stop with it instead of waiting
        raise
    try:
        return _follow(broadcast_json(decision)) or _train(cfg, restart, choice.record())
    finally:
        lock.release()


def _follow(decision: dict[str, Any]) -> dict[str, Any] | None:
    """Process 0's decision on every process: its finished result (or None: train), or its error."""
    if "error" in decision:
        raise ValueError(f"process 0 stopped: {decision['error']}")
    return decision["finished"]


def _resume(cfg: TrainConfig, ckpts: Checkpoints, compiled, restart: bool, problems: list[str]):
    """(state, data_state) from the newest intact checkpoint, from init_from, or None (fresh start)."""
    def report(line: str) -> None:
        problems.append(line)
        print(f"lm-train: {line}", file=sys.stderr, flush=True)

    found = ckpts.restore_newest_good(lambda s: ckpts.restore_unverified(compiled.abstract_state, s), report)
    if found is not None:
        state, data_state, _ = found[1]
        return state, data_state
    damaged = ckpts.damaged_steps()
    if damaged and not restart:
        raise ValueError(f"no intact checkpoint is left in {ckpts.directory} (the damaged ones, {damaged}, are "
                         f"moved aside to {os.path.join(cfg.out_dir, 'corrupt_checkpoints')}); rerun with "
                         "--restart to train this run from scratch")
    if damaged:
        ckpts.accept_damaged()
        report("no intact checkpoint left; starting from scratch (--restart)")
    if cfg.init_from is not None:
        source, branch_step = _branch_source(cfg)
        try:
            state, data_state, _ = source.restore(compiled.abstract_state, branch_step)
        finally:
            source.close()
        return state, data_state
    return None


@dataclasses.dataclass
class _Run:
    """What the stages of one run share (built by `_build`, before any state exists)."""

    cfg: TrainConfig
    compiled: Compiled
    lr_table: np.ndarray | None        # float32 [steps]: the host-fed schedule (None: in the step)
    blocks: _Blocks                    # the train step's inputs, a block of steps at a time
    stream: BatchStream                # training batches; .step is the position a checkpoint records
    eval_stream: BatchStream           # held-out batches
    eval_ds: Dataset                   # held-out split (its entropy floor)
    ckpts: Checkpoints
    lead: bool                         # process 0: the one that writes files
    t_start: float                     # time.time() when the run started

    @property
    def tokens_per_step(self) -> int:
        return self.cfg.batch_size * self.cfg.data.seq_len


def _train(cfg: TrainConfig, restart: bool, dtype_choice: dict[str, Any]) -> dict[str, Any]:
    """The run's stages, in order: build -> restore or initialise -> held-out set -> compile the
    step -> loop -> result.json (with `dtype_choice`: how the compute dtype was decided)."""
    run = _build(cfg)
    try:
        state, problems = _initial_state(run, restart)
    except BaseException:
        run.ckpts.close()
        raise
    try:
        eval_batches, floor = _held_out(run)
        step_fn, inputs, compile_s = _compile_step(run, state, eval_batches)
        loop = _Loop(run, eval_batches, start=int(state.step))
        state = loop.train(state, step_fn, inputs)
    except BaseException:
        _close_quietly(run.ckpts)
        raise
    return _finish(run, loop, state, {"compile_s": compile_s, "entropy_floor": floor,
                                      "checkpoint_problems": problems, "compute_dtype_choice": dtype_choice})


def _close_quietly(ckpts: Checkpoints) -> None:
    """Close the checkpoints of a run that stops on an error (that error is the one reported)."""
    try:
        ckpts.close()
    except BaseException:  # noqa: BLE001 - a save that failed with the run (a full disk) says it again
        pass


def _build(cfg: TrainConfig) -> _Run:
    """Mesh, optimizer, sharded step functions (traced, not compiled), data streams, checkpoints."""
    t_start = time.time()
    lr_table = _lr_table(cfg)
    compiled = _steps_for(cfg.model, cfg.optim, cfg.mesh, cfg.data.seq_len,
                          None if cfg.schedule_on_host else cfg.steps, block_size(cfg.batch_size, cfg.data.seq_len))
    _, eval_ds, stream, eval_stream = _build_data(cfg, compiled.batch_sharding)
    ckpts = Checkpoints(os.path.join(cfg.out_dir, "checkpoints"), keep=cfg.keep_checkpoints)
    return _Run(cfg=cfg, compiled=compiled, lr_table=lr_table, blocks=_Blocks(stream, compiled, lr_table),
                stream=stream, eval_stream=eval_stream,
                eval_ds=eval_ds, ckpts=ckpts, lead=jax.process_index() == 0, t_start=t_start)


def _initial_state(run: _Run, restart: bool):
    """(state, checkpoint problems): resumed (data position too) or initialised; then, every restore
    check having passed, config.json is written."""
    problems: list[str] = []
    resumed = _resume(run.cfg, run.ckpts, run.compiled, restart, problems)
    if resumed is not None:
        state, data_state = resumed
        run.stream.restore(data_state)
        if run.stream.step != int(state.step):
            raise ValueError(f"the checkpoint of {run.cfg.out_dir} at step {int(state.step)} records the data "
                             f"position {run.stream.step}; they must agree: move that checkpoint folder aside to "
                             "resume from an earlier one")
    else:
        state = run.compiled.init(jax.random.PRNGKey(run.cfg.seed))
    if run.lead:
        atomic_write_json(os.path.join(run.cfg.out_dir, "config.json"), to_dict(run.cfg))
    return state, problems


def _held_out(run: _Run) -> tuple[list[jax.Array], float | None]:
    """The held-out device batches every evaluation uses, and their exact entropy floor (synthetic data)."""
    cfg, eval_stream = run.cfg, run.eval_stream
    eval_batches = [eval_stream.device_batch(i, run.compiled.batch_sharding) for i in range(cfg.eval_batches)]
    floor = None
    if run.eval_ds.entropy_floor is not None:
        from lm.data.pipeline import floor_of
        floor = (floor_of(run.eval_ds, np.concatenate([eval_stream.batch(i) for i in range(cfg.eval_batches)]))
                 if jax.process_count() == 1 else run.eval_ds.entropy_floor)
    return eval_batches, floor


def _compile_step(run: _Run, state, eval_batches: list[jax.Array]) -> tuple[Any, tuple, float]:
    """(compiled train step, the inputs of the first block, seconds spent compiling): compiled
    ahead of the loop so its time is reported apart from the steps'; the evaluation step is
    compiled (run once on a held-out batch) here too, so compile time is never evaluation time,
    and so is the logged learning rate's schedule (never inside a throughput window)."""
    t0 = time.time()
    if eval_batches:
        jax.block_until_ready(run.compiled.eval_step(state.params, eval_batches[0]))
    _logged_lr(run.cfg, run.lr_table, int(state.step))   # its eager schedule ops compile here, not in a window
    start = run.stream.step                      # == state.step (_initial_state checks it)
    inputs = run.blocks.inputs(start, run.cfg.steps)
    step_fn = run.compiled.train_step.lower(state, *inputs).compile()
    return step_fn, inputs, time.time() - t0


_DIVERGED = "loss or gradient became NaN/Inf at step {}; lower the learning rate or clip"


class _Loop:
    """The training loop: dispatch the step, build the next batch while it runs, and, as the step
    numbers ask, log (metrics fetched one step late: no host sync), evaluate and checkpoint. A
    NaN/Inf loss or gradient (read from the fetched metrics, or from the state before it is
    evaluated or saved) stops the run as `diverged`."""

    def __init__(self, run: _Run, eval_batches: list[jax.Array], start: int):
        cfg = run.cfg
        self.run, self.eval_batches, self.start = run, eval_batches, start
        self.writer = MetricsWriter(cfg.out_dir, cfg.steps, start, tensorboard=cfg.tensorboard,
                                    progress=cfg.progress, enabled=run.lead)
        self.conventions = flops_lib.all_conventions(cfg.model, cfg.data.seq_len)
        self.peak = cfg.peak_flops or flops_lib.default_peak_flops()
        self.status, self.message = "completed", ""
        self.eval_curve: list[dict[str, float]] = []
        self.timers = {"eval_s": 0.0, "checkpoint_s": 0.0, "data_s": 0.0}
        self.pending: tuple[int, Any] | None = None   # (step, device metrics) to log one step late
        self.window: tuple[int, float, float] | None = None
        """(step, time, eval + checkpoint seconds so far) where the next logged throughput window
        starts: when the first step has finished, then at each logged row; evaluation and
        checkpoint time inside a window is left out of it, as it is of the run's train_s."""
        self.loop_s = 0.0
        self.first_step_s = 0.0     # the first step, run before the windows (and train_s) start

    def train(self, state, step_fn, inputs: tuple):
        """Steps from `start` to cfg.steps (or divergence), the first block's `inputs` given;
        returns the last state."""
        run, cfg, timers = self.run, self.run.cfg, self.timers
        stream, blocks = run.stream, run.blocks
        t0, done = time.time(), self.start
        try:
            with sigint.between_steps() as interrupted:  # Ctrl-C stops the loop between steps
                for step in range(self.start, cfg.steps):
                    state, metrics = step_fn(state, *inputs)   # dispatched, runs async; picks its batch and rate
                    done = step + 1
                    stream.step = done          # the data position a checkpoint now records
                    if done < cfg.steps and blocks.layout.starts_block(done):   # the next block, built while the step runs
                        td = time.time()
                        inputs = blocks.inputs(done, cfg.steps)
                        timers["data_s"] += time.time() - td
                    self.writer.advance()
                    if self.window is None:     # the first window starts when the first step has finished
                        jax.block_until_ready(metrics)
                        self.window = (done, time.time(), self._paused_s())
                        self.first_step_s = self.window[1] - t0
                    if not self._after_step(state, metrics, done):
                        break
                    if interrupted():
                        raise KeyboardInterrupt
        except KeyboardInterrupt as e:
            self._interrupted(e, done)
        if self.pending is not None:    # the last logged step's row (the NaN one if it diverged)
            self._log_pending()
        self.loop_s = time.time() - t0
        return state

    def _interrupted(self, e: KeyboardInterrupt, done: int):
        """Ctrl-C: let a checkpoint being saved finish (and be sealed), then re-raise `e` carrying
        the step reached (lm-train prints one line; the rerun resumes from the last checkpoint)."""
        self.writer.close()
        try:
            self.run.ckpts.wait()
        except KeyboardInterrupt:
            pass
        e.step = done
        raise e

    def _after_step(self, state, metrics, done: int) -> bool:
        """Log, evaluate and checkpoint as step `done` asks; False when the run must stop."""
        cfg = self.run.cfg
        if self.pending is not None:    # the previous step's metrics: ready without waiting
            bad = self._log_pending()
            if bad >= 0:
                return self._stop(_DIVERGED.format(bad))
        last = done == cfg.steps
        is_eval = last or (cfg.eval_every and done % cfg.eval_every == 0)
        is_ckpt = (last or (cfg.checkpoint_every and done % cfg.checkpoint_every == 0)
                   or done in cfg.checkpoint_steps)
        if done % cfg.log_every == 0 or last or is_eval or is_ckpt:
            self.pending = (done, metrics)
        if not (is_eval or is_ckpt):
            return True
        bad = int(state.first_bad_step)  # never evaluate or save a diverged state
        if bad >= 0:
            return self._stop(_DIVERGED.format(bad))
        if is_eval and not self._evaluate(state, done):
            return False
        if is_ckpt:
            if self.pending is not None:  # the row of a checkpointed step is on disk before its checkpoint
                self._log_pending()
            tc = time.time()
            self.run.ckpts.save(done, state, self.run.stream.state(), {"config": to_dict(cfg), "step": done})
            self.timers["checkpoint_s"] += time.time() - tc
        return True

    def _evaluate(self, state, done: int) -> bool:
        """Evaluate at step `done` and log it; False (and stop) when the loss is not finite."""
        te = time.time()
        loss = evaluate(self.run.compiled, state.params, self.eval_batches)
        self.timers["eval_s"] += time.time() - te
        self.eval_curve.append({"step": done, "tokens": done * self.run.tokens_per_step, "eval_loss": loss})
        self.writer.write(done, {"eval_loss": loss})
        return np.isfinite(loss) or self._stop(f"eval loss became {loss} at step {done}")

    def _stop(self, message: str) -> bool:
        self.status, self.message = "diverged", message
        self.writer.message(message)
        return False

    def _log_pending(self) -> int:
        """Write the row of the pending step (its device metrics fetched now); returns that step's
        first_bad_step (-1: none), read from the same fetch. Throughput is measured from the last row."""
        cfg, (p_step, p_metrics) = self.run.cfg, self.pending
        self.pending = None
        tokens_per_step = self.run.tokens_per_step
        row = {k: float(v) for k, v in jax.device_get(p_metrics).items()}   # waits for step p_step
        now, paused = time.time(), self._paused_s()
        bad = int(row.pop("first_bad_step", -1))
        row.update(lr=_logged_lr(cfg, self.run.lr_table, p_step - 1), tokens=p_step * tokens_per_step)
        start, t_start, paused_start = self.window
        n_steps, dt = p_step - start, now - t_start - (paused - paused_start)
        if n_steps > 0 and dt > 0:      # none for the first step (it opens the first window)
            row.update(tokens_per_s=n_steps * tokens_per_step / dt,
                       mfu=flops_lib.mfu(self.conventions["6n_attn"] * tokens_per_step, dt / n_steps, self.peak))
        self.writer.write(p_step, row)
        self.window = (p_step, now, paused)
        return bad

    def _paused_s(self) -> float:
        return self.timers["eval_s"] + self.timers["checkpoint_s"]


def _logged_lr(cfg: TrainConfig, lr_table: np.ndarray | None, step: int) -> float:
    """The learning rate step `step` used: the host table's entry (what the step was fed), else the
    schedule evaluated on the host."""
    if lr_table is not None:
        return float(lr_table[min(step, len(lr_table) - 1)])
    return learning_rate_at(cfg.optim, cfg.steps, step)


def _finish(run: _Run, loop: _Loop, state, extra: dict[str, Any]) -> dict[str, Any]:
    """Close the checkpoints (waits for the last save), evaluate once more if the final step has
    no evaluation yet, and write result.json."""
    train_s = loop.loop_s - loop.first_step_s - loop.timers["eval_s"] - loop.timers["checkpoint_s"]
    tc = time.time()
    run.ckpts.close()
    loop.timers["checkpoint_s"] += time.time() - tc
    loop.writer.close()
    bad_step = int(state.first_bad_step)
    steps_done = bad_step if loop.status == "diverged" and bad_step >= 0 else int(state.step)
    eval_curve = _final_eval_curve(run, loop, state, steps_done)
    steps_run, tokens_per_step = max(steps_done - loop.start - 1, 1), run.tokens_per_step   # as the windows
    flops_per_token = loop.conventions["6n_attn"]
    result = {
        "status": loop.status, "message": loop.message, "out_dir": run.cfg.out_dir,
        "steps": steps_done, "tokens": steps_done * tokens_per_step,
        "eval_loss": eval_curve[-1]["eval_loss"] if eval_curve else None,
        "train_loss": _last_train_loss(os.path.join(run.cfg.out_dir, "metrics.jsonl")) if run.lead else None,
        "eval_curve": eval_curve, "entropy_floor": extra["entropy_floor"],
        "params": dataclasses.asdict(flops_lib.param_counts(run.cfg.model)), "flops_per_token": loop.conventions,
        "wall_s": time.time() - run.t_start, "compile_s": extra["compile_s"], "train_s": train_s,
        "first_step_s": loop.first_step_s,
        "resumed_from": loop.start, **loop.timers,
        "tokens_per_s": steps_run * tokens_per_step / max(train_s, 1e-9),
        "mfu": flops_lib.mfu(flops_per_token * tokens_per_step, train_s / steps_run, loop.peak),
        "peak_flops": loop.peak, "checkpoint_problems": extra["checkpoint_problems"],
        "compute_dtype_choice": extra["compute_dtype_choice"],
    }
    if run.lead:
        atomic_write_json(os.path.join(run.cfg.out_dir, "result.json"), result)
    return result


def _final_eval_curve(run: _Run, loop: _Loop, state, steps_done: int) -> list[dict[str, float]]:
    """The run's eval curve: a completed run whose last step has no evaluation (a rerun after a crash
    between the final checkpoint and result.json) is evaluated now; a resumed run's curve includes
    the evaluations logged before the resume."""
    eval_curve, tokens_per_step = loop.eval_curve, run.tokens_per_step
    metrics_path = os.path.join(run.cfg.out_dir, "metrics.jsonl")
    if loop.status == "completed" and (not eval_curve or eval_curve[-1]["step"] != steps_done):
        logged = broadcast_json(_logged_eval(metrics_path, steps_done, tokens_per_step) if run.lead else None)
        if logged is not None:          # evaluated before the kill that left no result.json
            eval_curve.append(logged)
        else:
            loss = evaluate(run.compiled, state.params, loop.eval_batches)
            eval_curve.append({"step": steps_done, "tokens": steps_done * tokens_per_step, "eval_loss": loss})
            if run.lead:
                from lm.io import append_jsonl
                append_jsonl(metrics_path, {"step": steps_done, "eval_loss": loss})
    if run.lead and loop.start:
        eval_curve = read_eval_curve(metrics_path, tokens_per_step) or eval_curve
    return eval_curve


def _logged_eval(metrics_path: str, step: int, tokens_per_step: int) -> dict[str, float] | None:
    """The evaluation metrics.jsonl holds for `step` ({step, tokens, eval_loss}), or None."""
    return next((e for e in read_eval_curve(metrics_path, tokens_per_step) if e["step"] == step), None)


def _last_train_loss(path: str) -> float | None:
    from lm.io import read_jsonl
    losses = [r["loss"] for r in read_jsonl(path) if "loss" in r]
    return losses[-1] if losses else None


def default_config() -> TrainConfig:
    """The `lm-train` default: a small model on the built-in synthetic language, ~1-2 minutes on a CPU."""
    from lm.config import DataConfig, ModelConfig, OptimConfig
    return TrainConfig(model=ModelConfig(vocab_size=64, d_model=64, n_layers=3, n_heads=4, max_seq_len=128,
                                         d_ff=256, compute_dtype="float32"),  # faster at d64 here
                       data=DataConfig(seq_len=128), optim=OptimConfig(learning_rate=3e-3, warmup_steps=30),
                       steps=300, batch_size=16, eval_every=50, out_dir="runs/default")


def _error_line(e: Exception, cfg: TrainConfig | None) -> str:
    """What lm-train prints for an error that stops it: a full disk in one line (path, space free,
    space a checkpoint needs), a bad input as raised; any other OSError is re-raised."""
    from lm.disk import disk_full_message, is_disk_full
    if cfg is not None and is_disk_full(e):
        return disk_full_message(e, cfg.out_dir, 12.0 * flops_lib.param_counts(cfg.model).total)
    if isinstance(e, (ValueError, FileNotFoundError)):
        return str(e)
    raise e


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lm-train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="`lm-train --help-config` lists every config field by section "
                                            "with its documentation and default.")
    parser.add_argument("--config", help="a JSON config or a Python file defining `config`/`get_config()`")
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. model.d_model=128 steps=100 "
                        "(values as JSON; every field: --help-config)")
    parser.add_argument("--help-config", action=help_config_action(default_config, "lm-train's defaults"),
                        help="list every config field by section with its documentation, and exit")
    parser.add_argument("--coordinator", help="host:port of process 0 for a multi-process run")
    parser.add_argument("--num-processes", type=int)
    parser.add_argument("--process-id", type=int)
    parser.add_argument("--local-cpu-devices", type=int, help="simulated CPU devices in this process")
    parser.add_argument("--coordinator-timeout", type=int,
                        help="seconds to wait for every process to join (default 120)")
    parser.add_argument("--compile-cache", default=os.environ.get("LM_COMPILE_CACHE"),
                        help="persistent XLA compilation cache folder")
    parser.add_argument("--restart", action="store_true",
                        help="when every checkpoint of the run is corrupt, train it again from scratch")
    args = parser.parse_args(argv)
    from lm import xla_env
    xla_env.apply()                     # before JAX starts its backend (initialize below)
    from lm.distributed import initialize
    from lm.disk import quiet_disk_full_logs
    quiet_disk_full_logs()
    cfg = None
    try:
        cfg = load_train_config(args.config) if args.config else default_config()
        cfg = apply_overrides(cfg, args.overrides)
        initialize(args.coordinator, args.num_processes, args.process_id, args.local_cpu_devices,
                   args.coordinator_timeout)
        from lm import compile_cache
        compile_cache.configure(args.compile_cache, min_compile_s=0.5)
        result = train(cfg, restart=args.restart)
    except (ValueError, OSError) as e:
        print(f"lm-train: error: {_error_line(e, cfg)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        step = getattr(e, "step", None)
        where = f"at step {step}" if step is not None else "before training started"
        print(f"lm-train: interrupted {where}; rerun the same command to resume", file=sys.stderr)
        return 130
    if jax.process_index() == 0:
        summary = {k: result[k] for k in ("status", "steps", "tokens", "train_loss", "eval_loss",
                                          "entropy_floor", "tokens_per_s", "mfu", "wall_s", "compile_s")}
        from lm.io import dumps_strict
        print(dumps_strict(summary, indent=2))
    return 0 if result["status"] == "completed" else 3


if __name__ == "__main__":
    sys.exit(main())
