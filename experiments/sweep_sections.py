"""The sections of a sweep config (experiments.configs.SweepConfig): which sizes each budget trains
(SizeConfig), WSD twins of the cosine runs (WSDConfig), a learning-rate transfer grid
(TransferConfig), an encoder-decoder grid (EncDecConfig), and how the runs are executed
(ExecConfig). Each is a frozen dataclass with a docstring under every field and a `validate()`
whose errors name the field and the fix."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from lm.config import DECAY_SHAPES, PARAMETRIZATIONS
from lm.presets import MODEL_PRESETS

SIZE_RULES = ("aspect", "preset")
BACKENDS = ("inline", "pool", "submitit")


@dataclasses.dataclass(frozen=True)
class SizeConfig:
    """Which model sizes each budget trains, and how a size becomes a shape.

    Sizes are non-embedding parameter counts N (Kaplan's N), given either as a list shared by all
    budgets (`targets`) or as a range with `per_budget` sizes for each budget (`range`).
    """

    rule: str = "aspect"
    """How a target N becomes a shape. 'aspect': for each depth n_layers in [min_layers, max_layers]
    the width d_model (a multiple of width_step) whose N is nearest the target; of those, the one
    whose d_model / n_layers is nearest `aspect` (log scale). Depth and width then both grow with N
    (a one-parameter family, as in Kaplan et al.'s fixed-aspect models); n_heads = round(d_model /
    head_dim), d_ff = ff_mult * d_model. 'preset': `presets` name lm.presets model presets (their
    d_model, n_layers, n_heads, d_ff; vocabulary and context come from the sweep)."""
    targets: tuple[float, ...] = ()
    """Explicit target sizes (non-embedding N), the same for every budget."""
    range: tuple[float, float] | None = None
    """(n_min, n_max): sizes come from this range instead, `per_budget` of them for each budget."""
    per_budget: int = 5
    """With `range`: sizes per budget, log-spaced."""
    window: float | None = None
    """With `range`: each budget takes `per_budget` consecutive sizes of one log-spaced ladder
    over the range (ratio window^(2/(per_budget-1)), so they span about N*/window .. N* x window),
    centred on the guessed optimum N* = sqrt(C / (6 tokens_per_param_guess)) and shifted down where
    the largest are infeasible. Budgets share sizes, hence compilations. None: `per_budget` sizes
    log-spaced over the whole feasible range, per budget."""
    tokens_per_param_guess: float = 20.0
    """The guess behind `window` (Chinchilla: ~20 tokens per parameter)."""
    aspect: float = 16.0
    """'aspect' rule: target d_model / n_layers."""
    width_step: int = 8
    """'aspect' rule: d_model is a multiple of this."""
    head_dim: int = 8
    """Width of each attention head (n_heads = max(1, round(d_model / head_dim)))."""
    ff_mult: int = 4
    """MLP hidden width as a multiple of d_model."""
    min_layers: int = 1
    """Shallowest shape considered (2 gives every model an induction-capable depth)."""
    max_layers: int = 24
    """Deepest shape considered."""
    presets: tuple[str, ...] = ()
    """'preset' rule: lm.presets names, e.g. ('tiny-32', 'tiny-64')."""

    def validate(self) -> "SizeConfig":
        if self.rule not in SIZE_RULES:
            raise ValueError(f"size rule {self.rule!r} is not known; pick one of {list(SIZE_RULES)} "
                             "(sizes.rule in the sweep config)")
        if self.rule == "preset":
            if not self.presets:
                raise ValueError("size rule 'preset' needs sizes.presets, e.g. ('tiny-32', 'tiny-64')")
            unknown = [p for p in self.presets if p not in MODEL_PRESETS]
            if unknown:
                raise ValueError(f"unknown model preset(s) {unknown} in sizes.presets; presets: "
                                 f"{sorted(MODEL_PRESETS)}")
            return self
        if bool(self.targets) == (self.range is not None):
            raise ValueError("give the sizes either as sizes.targets (a list of N) or as sizes.range="
                             "(n_min, n_max) with sizes.per_budget, not both and not neither")
        if self.targets and min(self.targets) <= 0:
            raise ValueError(f"sizes.targets {self.targets} must all be positive parameter counts")
        if self.range is not None:
            lo, hi = self.range
            if not 0 < lo < hi:
                raise ValueError(f"sizes.range={self.range} must be (n_min, n_max) with 0 < n_min < n_max")
            if self.per_budget < 1:
                raise ValueError(f"sizes.per_budget={self.per_budget} must be >= 1")
        if self.window is not None and self.window <= 1:
            raise ValueError(f"sizes.window={self.window} must be > 1 (a factor each side of N*), or None")
        for name in ("head_dim", "width_step", "ff_mult", "min_layers", "max_layers"):
            if getattr(self, name) < 1:
                raise ValueError(f"sizes.{name}={getattr(self, name)} must be >= 1")
        if self.head_dim % 2:
            raise ValueError(f"sizes.head_dim={self.head_dim} must be even (rotary positions)")
        if self.min_layers > self.max_layers:
            raise ValueError(f"sizes.min_layers={self.min_layers} > max_layers={self.max_layers}")
        if self.aspect <= 0:
            raise ValueError(f"sizes.aspect={self.aspect} must be > 0")
        return self


@dataclasses.dataclass(frozen=True)
class WSDConfig:
    """Warmup-stable-decay runs (Hagele et al. 2024): each size trains once at a constant learning
    rate, checkpointing at every branch point, and a short cooldown branched from each checkpoint
    gives the loss at one token count. Branches are placed at the token counts of the size's cosine
    runs, so every WSD point has a cosine twin at equal (N, D)."""

    sizes: tuple[str, ...] = ()
    """Shape names ('d32-L2', as the plan names them) to run as WSD; () = every shape of the sweep
    (a WSD IsoFLOP sweep beside the cosine one: the report fits both and compares them)."""
    cooldown_frac: float = 0.2
    """Cooldown length as a fraction of the branch's total steps."""
    decay_shape: str = "sqrt"
    """Shape of the cooldown: 'linear', 'cosine' or 'sqrt' (1 - sqrt, Hagele et al.'s best)."""
    trunk_steps: int | None = None
    """Length of every trunk in optimizer steps; None = up to its last branch point. Set it to
    train the trunks further (e.g. to branch larger budgets later from the same trunks); every
    branch must then lie within it."""

    def validate(self) -> "WSDConfig":
        if not 0 < self.cooldown_frac < 1:
            raise ValueError(f"wsd.cooldown_frac={self.cooldown_frac} must be in (0, 1)")
        if self.trunk_steps is not None and self.trunk_steps < 1:
            raise ValueError(f"wsd.trunk_steps={self.trunk_steps} must be >= 1, or None (up to the last branch)")
        if self.decay_shape not in DECAY_SHAPES:
            raise ValueError(f"wsd.decay_shape={self.decay_shape!r}; pick one of {list(DECAY_SHAPES)}")
        return self


@dataclasses.dataclass(frozen=True)
class TransferConfig:
    """A learning-rate transfer sweep (muP, Yang et al. 2022) instead of an IsoFLOP grid: models of
    widths base_width x width_mults at one depth, each trained for `steps` steps (cosine) at every
    learning rate of `learning_rates`, once per parametrisation. The report gives each width's
    optimal learning rate under each parametrisation; under muP it should not move with width."""

    base_width: int = 16
    """Width (d_model) of the x1 model. muP's own base width is model.mup_base_width (it must divide
    every width), so the transfer measures the parametrisation an IsoFLOP sweep with the same
    model template trains, and its x1 optimum is that sweep's base learning rate."""
    width_mults: tuple[int, ...] = (1, 2, 4, 8)
    """Widths trained, as multiples of base_width."""
    n_layers: int = 2
    """Depth of every model (fixed: muP transfers across width)."""
    learning_rates: tuple[float, ...] = (2e-3, 4e-3, 8e-3, 1.6e-2, 3.2e-2)
    """Peak learning rates tried at every width (the grid) under the standard parametrisation."""
    mup_learning_rates: tuple[float, ...] = ()
    """The grid under muP (its base rate: embeddings and unembedding train at it, hidden matrices at
    it / m); () = learning_rates. muP's optimum sits higher when m > 1 at every width trained."""

    def grid(self, parametrization: str) -> tuple[float, ...]:
        """The learning rates tried under `parametrization`."""
        return self.mup_learning_rates if parametrization == "mup" and self.mup_learning_rates else self.learning_rates
    parametrizations: tuple[str, ...] = ("standard", "mup")
    """Parametrisations compared (lm.config.PARAMETRIZATIONS)."""
    steps: int = 300
    """Optimizer steps of every run."""

    def validate(self) -> "TransferConfig":
        for name in ("learning_rates", "mup_learning_rates"):
            grid = getattr(self, name)
            if (name == "learning_rates" and not grid) or any(lr <= 0 for lr in grid):
                raise ValueError(f"transfer.{name}={grid}: the learning-rate grid needs positive values, "
                                 "e.g. (2e-3, 4e-3, 8e-3, 1.6e-2, 3.2e-2)")
            if len(set(grid)) != len(grid):
                raise ValueError(f"transfer.{name}={grid} repeat a value; list each once")
        if not self.width_mults or min(self.width_mults) < 1 or len(set(self.width_mults)) != len(self.width_mults):
            raise ValueError(f"transfer.width_mults={self.width_mults} must be distinct whole numbers >= 1, "
                             "e.g. (1, 2, 4, 8)")
        unknown = [p for p in self.parametrizations if p not in PARAMETRIZATIONS]
        if unknown or not self.parametrizations:
            raise ValueError(f"transfer.parametrizations={self.parametrizations}: pick from {list(PARAMETRIZATIONS)}")
        for name in ("base_width", "n_layers", "steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"transfer.{name}={getattr(self, name)} must be >= 1")
        return self


@dataclasses.dataclass(frozen=True)
class EncDecConfig:
    """An encoder-decoder sweep (Ghorbani et al. 2021) instead of the IsoFLOP grid: every
    (width, encoder depth, decoder depth) of the grid trains for `steps` steps (cosine) on the
    sweep's paired data, and the report fits L(N_e, N_d) = beta (N_e/N_e_ref)^-p_e (N_d/N_d_ref)^-p_d
    + L_inf (lm.scaling.ghorbani). Encoder and decoder share d_model (the model has one width), so
    their sizes move apart through their depths; widths move both."""

    encoder_layers: tuple[int, ...] = (1, 2, 4)
    """Encoder depths trained (each >= 1)."""
    decoder_layers: tuple[int, ...] = (1, 2, 4)
    """Decoder depths trained (each >= 1)."""
    widths: tuple[int, ...] = (32,)
    """d_model of the models (n_heads = d_model / sizes.head_dim, d_ff = sizes.ff_mult x d_model)."""
    steps: int = 300
    """Optimizer steps of every run (a fixed horizon: the fit is over model size, not data)."""

    def validate(self) -> "EncDecConfig":
        for name in ("encoder_layers", "decoder_layers", "widths"):
            values = getattr(self, name)
            if not values or min(values) < 1 or len(set(values)) != len(values):
                raise ValueError(f"encdec.{name}={values} must be distinct whole numbers >= 1, e.g. (1, 2, 4)")
        if len(self.encoder_layers) * len(self.decoder_layers) * len(self.widths) < 5:
            raise ValueError("encdec: the grid has fewer than 5 models; L(N_e, N_d) has 4 parameters, so give at "
                             "least 5 (width, encoder depth, decoder depth) points, e.g. 3 x 3 depths")
        if self.steps < 1:
            raise ValueError(f"encdec.steps={self.steps} must be >= 1")
        return self


@dataclasses.dataclass(frozen=True)
class ExecConfig:
    """How the runs are executed. May differ between invocations of one sweep (not in sweep.json)."""

    backend: str = "pool"
    """'inline' (in this process, for debugging), 'pool' (worker processes on this machine) or
    'submitit' (SLURM, or submitit's local executor with cluster='local')."""
    workers: int = 2
    """Pool: worker processes running at once (submitit: jobs in flight)."""
    threads: int = 1
    """Pool/submitit: CPU threads per worker (each worker is pinned to this many cores)."""
    max_retries: int = 2
    """A run that fails (exception or crashed worker) is retried up to this many times."""
    cluster: str | None = None
    """submitit: None = auto (SLURM if available), 'slurm', 'local' or 'debug'."""
    slurm: tuple[tuple[str, Any], ...] = ()
    """submitit: extra executor parameters as (name, value) pairs, e.g. (('slurm_partition', 'gpu'),
    ('timeout_min', 60))."""
    poll_s: float = 0.5
    """How often the sweep refreshes its progress bars and checks on workers."""
    nodes: int = 1
    """submitit: nodes per run; each run is one job of nodes x tasks_per_node JAX processes (one
    device each on CPU, one GPU each with one task per GPU) that train it together, data-parallel
    over the mesh. Under SLURM jax.distributed finds the cluster itself; submitit's local executor
    (one node) has its tasks meet at a coordinator on 127.0.0.1."""
    tasks_per_node: int = 1
    """submitit: JAX processes per node of each run (see nodes)."""
    compile_cache: str = "user"
    """Where compiled programs persist, so a shape compiled once is loaded instead of compiled again
    in every later worker, invocation or sweep that meets it: 'user' (one cache for all
    of this user's sweeps: $LM_COMPILE_CACHE, else $XDG_CACHE_HOME/lm/xla, else ~/.cache/lm/xla),
    'sweep' (the sweep folder's .jax_cache only), 'none', or a folder (on a cluster: one every node
    sees). Entries are keyed by program, compile options, XLA_FLAGS and jax version: never stale."""
    allow_swap: bool = False
    """Let runs whose memory estimate exceeds the available memory (on a CPU host: shared by the
    workers that train at once) start anyway, on swap (TrainConfig.allow_swap); False refuses the
    sweep before any worker starts."""

    @property
    def processes_per_run(self) -> int:
        return self.nodes * self.tasks_per_node

    def validate(self) -> "ExecConfig":
        if self.backend not in BACKENDS:
            raise ValueError(f"backend {self.backend!r} is not known; pick one of {list(BACKENDS)}")
        if self.workers < 1 or self.threads < 1 or self.max_retries < 0:
            raise ValueError(f"workers={self.workers} and threads={self.threads} must be >= 1, "
                             f"max_retries={self.max_retries} >= 0")
        if self.nodes < 1 or self.tasks_per_node < 1:
            raise ValueError(f"exec.nodes={self.nodes} and exec.tasks_per_node={self.tasks_per_node} must be >= 1")
        if self.processes_per_run > 1 and self.backend != "submitit":
            raise ValueError(f"runs of {self.processes_per_run} processes (exec.nodes x exec.tasks_per_node) need "
                             f"backend='submitit', not {self.backend!r}; set exec.backend=submitit or 1 process per run")
        if not self.compile_cache.strip() or os.path.isfile(os.path.expanduser(self.compile_cache)):
            raise ValueError(f"exec.compile_cache={self.compile_cache!r} must be 'user', 'sweep', 'none' or a "
                             "folder (not a file); e.g. exec.compile_cache=user")
        if self.nodes > 1 and self.cluster == "local":
            raise ValueError(f"submitit's local executor runs on one node, not exec.nodes={self.nodes}; set "
                             "exec.nodes=1 (more processes: exec.tasks_per_node) or a SLURM cluster")
        return self


@dataclasses.dataclass(frozen=True)
class AdaptiveConfig:
    """Adaptive IsoFLOP design (experiments.adaptive): budgets train in ascending stages, each stage's
    sizes log-spaced around N_opt(C) forecast from the stages before it; sizes come from the shared
    ladder of a windowed range (sizes.range, sizes.window, sizes.per_budget sizes per stage)."""

    prior_stages: int = 2
    """Stages centred on the prior N* = sqrt(C / (6 sizes.tokens_per_param_guess)) (later stages: the forecast)."""
    spread: float = 3.0
    """A stage's sizes span N*/spread .. N* x spread (log-spaced)."""
    max_spread: float = 8.0
    """The spread widens to the forecast's 90 % interval for N_opt, up to this factor."""
    edge_sizes: int = 2
    """Sizes added beyond an edge when a stage's parabola minimum lies outside or at the edge of its sizes."""
    max_edge_rounds: int = 2
    """Times a stage may add edge sizes before the next stage starts."""
    forecast_bootstrap: int = 200
    """Bootstrap resamples behind each forecast's intervals."""
    preregister_from: int = 3
    """First stage (1-based) whose forecast is written to forecasts.jsonl before it trains."""
    seeds_first_stages: int = 1
    """Seeds each size of the prior stages (1 .. prior_stages) trains: replicas '<run_id>-s<k>' vary
    train.seed and train.data.seed by k, and the fits average their losses (one run's loss moves by
    up to ~0.1 nats with its seed, and a budget's runs share the shift; the forecasts rest on these
    stages)."""
    seeds_later_stages: tuple[int, ...] = ()
    """Seeds each size of the stages after the prior ones trains, stage by stage (replicas as above;
    the last entry holds for any further stage, () = one seed each). A later stage's minimum is a
    point of every forecast after it and the target of its own; a budget's runs share a seed's
    shift (experiments.forecasts.COMMON_NOISE) that more sizes cannot average away and more seeds
    can. The largest budget's minimum serves no later forecast, so a sweep may give it fewer."""

    def validate(self) -> "AdaptiveConfig":
        if self.prior_stages < 2:
            raise ValueError(f"adaptive.prior_stages={self.prior_stages}: a forecast of N_opt(C) needs >= 2 stages; "
                             "set it to >= 2")
        if not 1.0 < self.spread <= self.max_spread:
            raise ValueError(f"adaptive.spread={self.spread} must be > 1 and <= adaptive.max_spread={self.max_spread}")
        if self.edge_sizes < 1 or self.max_edge_rounds < 0 or self.preregister_from < self.prior_stages + 1:
            raise ValueError(f"adaptive.edge_sizes={self.edge_sizes} must be >= 1, max_edge_rounds="
                             f"{self.max_edge_rounds} >= 0 and preregister_from={self.preregister_from} > prior_stages")
        if not _whole(self.seeds_first_stages):
            raise ValueError(f"adaptive.seeds_first_stages={self.seeds_first_stages!r} must be a whole number >= 1 "
                             "(1 = one seed per run); set e.g. adaptive.seeds_first_stages=3")
        if not isinstance(self.seeds_later_stages, tuple) or not all(_whole(k) for k in self.seeds_later_stages):
            raise ValueError(f"adaptive.seeds_later_stages={self.seeds_later_stages!r} must list whole numbers >= 1, "
                             "one per stage after the prior ones (the last holds for the rest); set e.g. "
                             "adaptive.seeds_later_stages=[2,2,2,1]")
        if self.forecast_bootstrap < 2:
            raise ValueError(f"adaptive.forecast_bootstrap={self.forecast_bootstrap} must be >= 2 (intervals need resamples)")
        return self


def _whole(value) -> bool:
    """A seed count: an int >= 1 (not a bool)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1
