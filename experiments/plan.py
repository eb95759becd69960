"""Plan an IsoFLOP sweep: budgets x sizes -> shapes, tokens, steps and one TrainConfig per run.

For each compute budget C and each size N the plan picks a shape (the size rule of
`SizeConfig`), the tokens D = C / (training FLOPs per token under the sweep's convention), rounded to
whole optimizer steps of batch_size x seq_len tokens, and a cosine cycle as long as the run. Points
with fewer than `min_steps` steps, or fewer tokens per parameter than `min_tokens_per_param`, are
dropped with the reason (a windowed range only offers feasible sizes in the first place). With
`wsd` set, each chosen shape also gets one constant-learning-rate trunk that checkpoints at the
branch points, and one cooldown per cosine twin (same N, same D).

Every run trains with `schedule_on_host`, so runs of one shape share one compiled step whatever
their length (the sweep's persistent compilation cache); a windowed range draws every budget's
sizes from one shared ladder of shapes for the same reason.

Shapes and the size rule live in experiments.shapes; the table `lm-sweep plan` shows, with its
probe and wall-time estimate, in experiments.plan_table.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from typing import Any, Iterable

from experiments.configs import SweepConfig
from experiments.shapes import Shape, nonembed_params, preset_shape, shape_for, shape_grid
from lm import flops as flops_lib
from lm.config import ModelConfig, TrainConfig

KINDS = ("cosine", "wsd_constant", "wsd_cooldown", "lr_transfer")


def _log_spaced(lo: float, hi: float, k: int) -> list[float]:
    if k == 1:
        return [math.sqrt(lo * hi)]
    return [lo * (hi / lo) ** (i / (k - 1)) for i in range(k)]


def budget_steps(cfg: SweepConfig, flops_per_token: float, budget: float) -> int:
    """Whole optimizer steps of batch_size x seq_len tokens that spend budget C (nearest)."""
    return int(round(budget / flops_per_token / cfg.tokens_per_step))


def _steps(cfg: SweepConfig, shape: Shape, budget: float) -> tuple[int, float]:
    """(optimizer steps, tokens per non-embedding parameter) of `shape` trained on budget C."""
    model = _run_model(cfg, shape)
    steps = budget_steps(cfg, flops_lib.flops_per_token(model, cfg.train.data.seq_len, cfg.convention), budget)
    return steps, steps * cfg.tokens_per_step / flops_lib.param_counts(model).non_embedding


def feasible(cfg: SweepConfig, shape: Shape, budget: float) -> bool:
    steps, tpp = _steps(cfg, shape, budget)
    return steps >= cfg.min_steps and tpp >= cfg.min_tokens_per_param


def shapes_for_budget(cfg: SweepConfig, budget: float) -> list[Shape]:
    """The distinct shapes budget C trains, smallest first.

    targets / presets: each target's nearest shape (infeasible ones are dropped later, with the
    reason). range: `per_budget` distinct shapes among the feasible ones in the range (at least
    min_steps steps), nearest to log-spaced targets over the window around the guessed optimum
    (the window is clipped to the feasible sizes, so a small budget still gets all its sizes).
    """
    sizes, template = cfg.sizes, _template(cfg)
    if sizes.rule == "preset":
        return [preset_shape(p) for p in sizes.presets]
    if sizes.targets:
        out: list[Shape] = []
        for target in sizes.targets:
            shape = shape_for(target, sizes, template)
            if shape not in out:
                out.append(shape)
        return sorted(out, key=lambda s: nonembed_params(s, template))
    lo, hi = sizes.range
    if sizes.window is None:          # k sizes log-spaced over the feasible part of the range
        candidates = [(n, s) for n, s in _grid(cfg) if lo <= n <= hi and feasible(cfg, s, budget)]
        chosen: list[tuple[int, Shape]] = []
        if candidates:
            for target in _log_spaced(candidates[0][0], candidates[-1][0], sizes.per_budget):
                left = [c for c in candidates if c not in chosen]
                if left:
                    chosen.append(min(left, key=lambda c: (abs(math.log(c[0] / target)), c[1].n_layers)))
        return [s for _, s in sorted(chosen, key=lambda c: c[0])]
    # Window: k consecutive points of one log grid shared by all budgets (so budgets share
    # shapes and their compilations), centred on the guessed optimum, among the feasible ones.
    rungs = [(n, s) for n, s in ladder(cfg) if feasible(cfg, s, budget)]
    if not rungs:
        return []
    guess = math.sqrt(budget / (6.0 * sizes.tokens_per_param_guess))
    centre = min(range(len(rungs)), key=lambda i: abs(math.log(rungs[i][0] / guess)))
    k = min(sizes.per_budget, len(rungs))
    start = min(max(centre - (k - 1) // 2, 0), len(rungs) - k)
    return [s for _, s in rungs[start:start + k]]


@functools.lru_cache(maxsize=8)
def ladder(cfg: SweepConfig) -> list[tuple[int, Shape]]:
    """The size ladder shared by the budgets of a windowed range: from the smallest shape in the
    range up, each next rung is the rule's shape nearest (log N) to ratio x the previous one, with
    ratio = window^(2/(per_budget-1)) so that per_budget rungs span about N*/window .. N* x window."""
    sizes = cfg.sizes
    ratio = sizes.window ** (2.0 / max(sizes.per_budget - 1, 1))
    grid = [item for item in _grid(cfg) if item[0] >= sizes.range[0]]
    ladder = grid[:1]
    while True:
        above = [item for item in grid if item[0] > ladder[-1][0] * math.sqrt(ratio)]
        if not above:
            return ladder
        ladder.append(min(above, key=lambda item: abs(math.log(item[0] / (ladder[-1][0] * ratio)))))


@functools.lru_cache(maxsize=8)
def _grid(cfg: SweepConfig) -> list[tuple[int, Shape]]:
    return shape_grid(cfg.sizes, _template(cfg), *cfg.sizes.range)


def _template(cfg: SweepConfig) -> ModelConfig:
    return dataclasses.replace(cfg.train.model, max_seq_len=cfg.train.data.seq_len)


def budget_label(budget: float) -> str:
    """3e10 -> '3e10', 1.5e11 -> '1.5e11'."""
    mantissa, exponent = f"{budget:.3g}".split("e") if "e" in f"{budget:.3g}" else (f"{budget:.3g}", "0")
    return f"{mantissa}e{int(exponent)}"


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """One run of the sweep. `compute` is the actual C = flops_per_token * tokens."""

    run_id: str
    kind: str
    """'cosine', 'wsd_constant' (the constant-LR trunk) or 'wsd_cooldown' (a branch of it)."""
    shape: Shape
    budget: float | None
    """Target C of the IsoFLOP point (None for a WSD trunk)."""
    steps: int
    tokens: int
    params: int
    params_nonembed: int
    flops_per_token: float
    """Training FLOPs per token under the sweep's convention."""
    parent: str | None = None
    """wsd_cooldown: the run_id of the trunk it branches from."""
    branch_step: int | None = None
    checkpoint_steps: tuple[int, ...] = ()
    learning_rate: float | None = None
    """Peak learning rate of this run; None = the sweep's train.optim.learning_rate."""
    parametrization: str | None = None
    """'standard' or 'mup' for this run; None = the sweep model's."""
    seed: int = 0
    """Seed replica k: added to train.seed and train.data.seed (0 = the sweep's own); the fits average
    the losses of a (shape, budget)'s replicas (experiments.report.fit_table)."""

    @property
    def compute(self) -> float:
        return self.flops_per_token * self.tokens

    @property
    def new_steps(self) -> int:
        """Steps this run trains itself (a cooldown starts at its branch step)."""
        return self.steps - (self.branch_step or 0)

    def model(self, cfg: SweepConfig) -> ModelConfig:
        """This run's ModelConfig: the sweep's template with its shape (and parametrisation)."""
        return _run_model(cfg, self.shape, self.parametrization)

    def train_config(self, cfg: SweepConfig, sweep_dir: str) -> TrainConfig:
        """The TrainConfig this run trains: the sweep's template (cfg.train) with the fields the plan
        sets per run (experiments.configs.PER_RUN_FIELDS) filled in; out_dir = <sweep_dir>/runs/<run_id>."""
        template = cfg.train
        if self.seed:
            template = dataclasses.replace(template, seed=template.seed + self.seed,
                                           data=dataclasses.replace(template.data, seed=template.data.seed + self.seed))
        optim = template.optim if self.learning_rate is None else dataclasses.replace(
            template.optim, learning_rate=self.learning_rate)
        keep = template.keep_checkpoints
        eval_every = -(-self.steps // cfg.evals_per_run)          # ceil: exactly evals_per_run evaluations
        ckpt_every = -(-self.steps // (cfg.checkpoints_per_run + 1)) if cfg.checkpoints_per_run else 0
        init_from = None
        if self.kind in ("cosine", "lr_transfer"):
            optim = dataclasses.replace(optim, schedule="cosine")
        elif self.kind == "wsd_constant":
            optim = dataclasses.replace(optim, schedule="constant")
            keep += len(self.checkpoint_steps) + cfg.checkpoints_per_run     # never rotate a branch point away
        else:
            cooldown = self.steps - self.branch_step
            optim = dataclasses.replace(optim, schedule="wsd", decay_frac=cooldown / self.steps,
                                        decay_shape=cfg.wsd.decay_shape)
            init_from = f"{run_dir(sweep_dir, self.parent)}@{self.branch_step}"
            eval_every, ckpt_every = 0, (cooldown // 2 if cfg.checkpoints_per_run else 0)
        return dataclasses.replace(
            template, model=self.model(cfg), optim=optim, steps=self.steps, eval_every=eval_every,
            checkpoint_every=ckpt_every, checkpoint_steps=self.checkpoint_steps, keep_checkpoints=keep,
            out_dir=run_dir(sweep_dir, self.run_id), init_from=init_from, allow_swap=cfg.exec.allow_swap)


def seed_replicas(spec: RunSpec, seeds: int) -> tuple[RunSpec, ...]:
    """`spec` and its seeds - 1 replicas: '<run_id>-s<k>' with seed k (k = 1 .. seeds-1)."""
    return (spec,) + tuple(dataclasses.replace(spec, run_id=f"{spec.run_id}-s{k}", seed=k) for k in range(1, seeds))


def run_dir(sweep_dir: str, run_id: str) -> str:
    return os.path.join(os.path.abspath(sweep_dir), "runs", run_id)


@dataclasses.dataclass(frozen=True)
class Dropped:
    budget: float
    shape: str
    params_nonembed: int
    reason: str


@dataclasses.dataclass(frozen=True)
class Plan:
    config: SweepConfig
    runs: tuple[RunSpec, ...]
    dropped: tuple[Dropped, ...]

    def by_id(self) -> dict[str, RunSpec]:
        return {r.run_id: r for r in self.runs}

    def to_dict(self) -> dict[str, Any]:
        return {"runs": [dataclasses.asdict(r) | {"compute": r.compute} for r in self.runs],
                "dropped": [dataclasses.asdict(d) for d in self.dropped]}


def _run_model(cfg: SweepConfig, shape: Shape, parametrization: str | None = None) -> ModelConfig:
    model = shape.model(cfg.train.model, cfg.train.data.seq_len)
    return model if parametrization is None else dataclasses.replace(model, parametrization=parametrization)


def run_spec(cfg: SweepConfig, run_id: str, kind: str, shape: Shape, budget: float | None, steps: int,
          **kw: Any) -> RunSpec:
    model = _run_model(cfg, shape, kw.get("parametrization"))
    counts = flops_lib.param_counts(model)
    fpt = flops_lib.flops_per_token(model, cfg.train.data.seq_len, cfg.convention)
    return RunSpec(run_id=run_id, kind=kind, shape=shape, budget=budget, steps=steps,
                   tokens=steps * cfg.tokens_per_step, params=counts.total,
                   params_nonembed=counts.non_embedding, flops_per_token=fpt, **kw)


def make_plan(cfg: SweepConfig) -> Plan:
    """The runs of the sweep, and the points dropped as infeasible (with the reason).

    Raises ValueError, before anything trains, for a sweep that cannot run as configured: a
    budget whose smallest size gets fewer than min_steps steps, a muP base width that does not
    divide a width, a WSD branch inside the warmup or past the trunk (see also SweepConfig.validate).
    """
    cfg.validate()
    if cfg.transfer is not None:
        return Plan(cfg, tuple(_transfer_runs(cfg)), ())
    if cfg.encdec is not None:
        return Plan(cfg, tuple(_encdec_runs(cfg)), ())
    runs: list[RunSpec] = []
    dropped: list[Dropped] = []
    empty = []
    for budget in sorted(cfg.budgets):
        shapes = shapes_for_budget(cfg, budget)
        _check_mup_widths(cfg, shapes)
        kept = 0
        for i, shape in enumerate(shapes):
            spec, reason = cosine_point(cfg, shape, budget, smallest=i == 0)
            if reason is None:
                runs.append(spec)
                kept += 1
            else:
                dropped.append(Dropped(budget, shape.name, spec.params_nonembed, reason))
        if not kept:
            empty.append(budget)
    if empty:
        reasons = "; ".join(f"{d.shape} at C={d.budget:.3g}: {d.reason}" for d in dropped if d.budget in empty)
        raise ValueError(f"budget(s) {[f'{b:.3g}' for b in empty]} have no feasible point ({reasons}); "
                         "raise those budgets, choose smaller sizes, or lower batch_size/seq_len/min_steps")
    if cfg.wsd is not None:
        runs += _wsd_runs(cfg, runs)
    return Plan(cfg, tuple(runs), tuple(dropped))


def horizon_learning_rate(cfg: SweepConfig, steps: int) -> float | None:
    """Peak learning rate of a cosine run of `steps` steps under the sweep's horizon rule
    (SweepConfig.lr_horizon_exponent); None = the sweep's train.optim.learning_rate."""
    if not cfg.lr_horizon_exponent:
        return None
    return cfg.train.optim.learning_rate * (max(steps, 1) / cfg.lr_horizon_steps) ** -cfg.lr_horizon_exponent


def cosine_point(cfg: SweepConfig, shape: Shape, budget: float, smallest: bool) -> tuple[RunSpec, str | None]:
    """(the cosine run of `shape` at `budget`, None) or (it, why it is dropped). The smallest size
    of a budget below min_steps is an error: the budget itself is too small for the sweep."""
    tokens_per_step = cfg.tokens_per_step
    probe = run_spec(cfg, "", "cosine", shape, budget, 1)
    steps = budget_steps(cfg, probe.flops_per_token, budget)
    spec = dataclasses.replace(probe, run_id=f"cos-C{budget_label(budget)}-{shape.name}", steps=steps,
                               tokens=steps * tokens_per_step, learning_rate=horizon_learning_rate(cfg, steps))
    if steps < cfg.min_steps and smallest:
        need = cfg.min_steps * tokens_per_step * probe.flops_per_token
        raise ValueError(f"budget C={budget:.3g} gives its smallest size {shape.name} only {steps} steps of "
                         f"{cfg.train.batch_size}x{cfg.train.data.seq_len} tokens (min_steps={cfg.min_steps}); raise that budget "
                         f"to >= {need:.3g} FLOPs ({cfg.convention!r}), or lower batch_size/seq_len/min_steps")
    tpp = spec.tokens / spec.params_nonembed
    if steps < cfg.min_steps:
        return spec, (f"only {steps} steps of {cfg.train.batch_size}x{cfg.train.data.seq_len} tokens (min_steps="
                      f"{cfg.min_steps}): model too large for this budget")
    if tpp < cfg.min_tokens_per_param:
        return spec, (f"{tpp:.2f} tokens per parameter < min_tokens_per_param="
                      f"{cfg.min_tokens_per_param}: model too large for this budget")
    return spec, None


def _check_mup_widths(cfg: SweepConfig, shapes: Iterable[Shape], mup: bool | None = None) -> None:
    """muP needs train.model.mup_base_width to divide every width (whole width multipliers)."""
    if not (cfg.train.model.parametrization == "mup" if mup is None else mup):
        return
    base = cfg.train.model.mup_base_width
    bad = sorted({s.d_model for s in shapes if s.d_model % base})
    if bad:
        raise ValueError(f"muP: train.model.mup_base_width={base} does not divide the width(s) d_model={bad} of this "
                         f"sweep's shapes; pick a base width that divides every width (e.g. sizes.width_step="
                         f"{cfg.sizes.width_step} as the base, or sizes.width_step a multiple of {base})")


def _transfer_runs(cfg: SweepConfig) -> list[RunSpec]:
    """Every (parametrisation, width, learning rate) of a transfer sweep: one cosine run each."""
    t = cfg.transfer
    head_dim = cfg.sizes.head_dim
    runs = []
    for width in (t.base_width * m for m in t.width_mults):
        if width % head_dim:
            raise ValueError(f"transfer: width {width} is not a multiple of sizes.head_dim={head_dim}; pick a "
                             f"transfer.base_width that is a multiple of {head_dim}")
        shape = Shape(width, t.n_layers, width // head_dim, cfg.sizes.ff_mult * width)
        _check_mup_widths(cfg, [shape], "mup" in t.parametrizations)
        for param in t.parametrizations:
            for lr in t.grid(param):
                runs.append(run_spec(cfg, f"lr-{param}-{shape.name}-lr{lr:g}", "lr_transfer", shape, None, t.steps,
                                  learning_rate=lr, parametrization=param))
    if t.steps < cfg.min_steps or t.steps <= cfg.train.optim.warmup_steps:
        raise ValueError(f"transfer.steps={t.steps} is below min_steps={cfg.min_steps} or inside the warmup "
                         f"({cfg.train.optim.warmup_steps} steps); raise transfer.steps")
    return runs


def _encdec_runs(cfg: SweepConfig) -> list[RunSpec]:
    """Every (width, encoder depth, decoder depth) of an encoder-decoder sweep: one cosine run each
    of encdec.steps steps (kind 'cosine', budget None)."""
    e = cfg.encdec
    if e.steps < cfg.min_steps or e.steps <= cfg.train.optim.warmup_steps:
        raise ValueError(f"encdec.steps={e.steps} is below min_steps={cfg.min_steps} or inside the warmup "
                         f"({cfg.train.optim.warmup_steps} steps); raise encdec.steps")
    runs = []
    for width in e.widths:
        n_heads = width // cfg.sizes.head_dim
        for enc in e.encoder_layers:
            for dec in e.decoder_layers:
                shape = Shape(width, dec, n_heads, cfg.sizes.ff_mult * width, n_encoder_layers=enc)
                runs.append(run_spec(cfg, f"ed-{shape.name}", "cosine", shape, None, e.steps))
    _check_mup_widths(cfg, [r.shape for r in runs])
    return runs


def _wsd_branches(cfg: SweepConfig, twins: list[RunSpec]) -> list[tuple[RunSpec, int]]:
    """(cosine twin, branch step) of each cooldown of one shape; bad branches are errors."""
    branches = []
    for twin in twins:
        cooldown = max(1, round(cfg.wsd.cooldown_frac * twin.steps))
        branch = twin.steps - cooldown
        if branch < cfg.train.optim.warmup_steps:
            raise ValueError(f"WSD: {twin.shape.name} at C={twin.budget:.3g} would branch at step {branch}, inside "
                             f"the warmup ({cfg.train.optim.warmup_steps} steps); lower wsd.cooldown_frac="
                             f"{cfg.wsd.cooldown_frac} or train.optim.warmup_steps")
        if cfg.wsd.trunk_steps is not None and branch > cfg.wsd.trunk_steps:
            raise ValueError(f"WSD: {twin.shape.name} at C={twin.budget:.3g} branches at step {branch}, past the "
                             f"trunk's end (wsd.trunk_steps={cfg.wsd.trunk_steps}); raise wsd.trunk_steps to >= "
                             f"{branch} or set it to None")
        branches.append((twin, branch))
    return branches


def _wsd_runs(cfg: SweepConfig, cosine: list[RunSpec]) -> list[RunSpec]:
    names = {r.shape.name for r in cosine}
    wanted = list(cfg.wsd.sizes) or sorted(names, key=lambda n: min(r.params for r in cosine if r.shape.name == n))
    unknown = [n for n in wanted if n not in names]
    if unknown:
        raise ValueError(f"wsd.sizes {unknown} are not shapes of this sweep; its shapes are {sorted(names)} "
                         "(see `lm-sweep plan`)")
    out: list[RunSpec] = []
    for name in wanted:
        twins = sorted((r for r in cosine if r.shape.name == name), key=lambda r: r.steps)
        branches = _wsd_branches(cfg, twins)
        trunk_id = f"wsd-trunk-{name}"
        trunk_steps = cfg.wsd.trunk_steps or max(b for _, b in branches)
        out.append(run_spec(cfg, trunk_id, "wsd_constant", twins[0].shape, None, trunk_steps,
                         checkpoint_steps=tuple(sorted({b for _, b in branches}))))
        for twin, branch in branches:
            out.append(run_spec(cfg, f"wsd-C{budget_label(twin.budget)}-{name}", "wsd_cooldown", twin.shape,
                             twin.budget, twin.steps, parent=trunk_id, branch_step=branch))
    return out
