"""What a sweep is: `SweepConfig` (a TrainConfig template of every run, plus what varies per run),
its validation, the sweep.json round trip, and `load(name_or_path)`.

A named sweep is a small Python file in this folder defining `get_config() -> SweepConfig`
(`default.py` is what `make sweep` runs). Everything that changes the numbers lives in
`SweepConfig` and is recorded in `<out_dir>/sweep.json`; how the runs are executed (`ExecConfig`)
may change between invocations of the same sweep. The sections (sizes, wsd, transfer, encdec,
exec) are in experiments.sweep_sections.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import runpy
from typing import Any

from experiments.sweep_sections import (AdaptiveConfig, EncDecConfig, ExecConfig, SizeConfig, TransferConfig,
                                        WSDConfig)
from lm.config import ModelConfig, TrainConfig
from lm.config_fields import check_fields, to_dict
from lm.config_fields import from_dict as lm_from_dict
from lm.flops import CONVENTIONS


def train_template(**fields: Any) -> TrainConfig:
    """A sweep's TrainConfig template: TrainConfig(**fields), where a field left out takes the sweep's
    default rather than lm-train's: a 64-token vocabulary (the synthetic language's), no TensorBoard
    files or progress bar per run, and the learning-rate schedule fed from the host (runs of one
    shape then share one compiled step whatever their length)."""
    defaults: dict[str, Any] = dict(model=ModelConfig(vocab_size=64), tensorboard=False, progress=False,
                                    schedule_on_host=True)
    return TrainConfig(**{**defaults, **fields})


_SIZE_RULE = "by the size rule (sizes.*)"
PER_RUN_FIELDS: dict[str, str] = {
    "steps": "from its budget (or transfer.steps, encdec.steps)",
    "eval_every": "from evals_per_run",
    "checkpoint_every": "from checkpoints_per_run",
    "checkpoint_steps": "at its WSD branch points",
    "out_dir": "as <sweep folder>/runs/<run_id> (the sweep folder is out_dir, or --out)",
    "init_from": "(a WSD cooldown starts from its trunk)",
    "model.d_model": _SIZE_RULE,
    "model.n_layers": "by the size rule (fix the depth with sizes.min_layers and sizes.max_layers)",
    "model.n_heads": "by the size rule (sizes.head_dim)",
    "model.n_kv_heads": _SIZE_RULE,
    "model.head_dim": "by the size rule (sizes.head_dim)",
    "model.d_ff": "by the size rule (sizes.ff_mult)",
    "model.max_seq_len": "to train.data.seq_len",
    "optim.schedule": "from its kind (cosine; a WSD trunk constant, a cooldown wsd)",
    "optim.decay_frac": "from wsd.cooldown_frac",
    "optim.decay_shape": "from wsd.decay_shape",
}
"""The template fields each run sets for itself (dotted names under `train`), and from what; a
sweep's template leaves them at TrainConfig's defaults."""


def _get(config: Any, dotted: str) -> Any:
    for name in dotted.split("."):
        config = getattr(config, name)
    return config


@dataclasses.dataclass(frozen=True)
class SweepConfig:
    """An IsoFLOP sweep: for each compute budget C, models of several sizes N each trained on
    D = C / (FLOPs per token) tokens with a cosine cycle as long as the run. Every run is the
    `train` template with what the plan varies per run (PER_RUN_FIELDS: shape, steps, schedule,
    evaluation and checkpoint steps, folder) filled in."""

    name: str = "default"
    """Name of the sweep; the default output folder is sweeps/<name>."""
    budgets: tuple[float, ...] = (3e10, 1e11, 3e11, 1e12)
    """Compute budgets C in training FLOPs under `convention`."""
    convention: str = "6n"
    """FLOP convention that turns C into tokens (lm.flops.CONVENTIONS); every convention is recorded."""
    sizes: SizeConfig = dataclasses.field(default_factory=SizeConfig)
    train: TrainConfig = dataclasses.field(default_factory=train_template)
    """Template of every run (see `train_template`): the model's vocabulary, positions, norm,
    activation, dtype and parametrisation; the data (train.data.seq_len is every run's context);
    the optimizer (optim.learning_rate is the base rate; the schedule is a cosine cycle over each
    run's own length); batch size, seed and evaluation batches. PER_RUN_FIELDS stay unset."""
    min_steps: int = 200
    """Points with fewer optimizer steps than this are dropped (too short to be trusted)."""
    min_tokens_per_param: float = 0.0
    """Points with fewer tokens per (non-embedding) parameter than this are dropped."""
    evals_per_run: int = 4
    """Held-out evaluations per run (evenly spaced; the last at the end)."""
    checkpoints_per_run: int = 2
    """Intermediate checkpoints per run (a crash loses at most 1/(this + 1) of a run)."""
    lr_horizon_steps: int | None = None
    """With `lr_horizon_exponent`: the run length (optimizer steps) at which train.optim.learning_rate
    is the peak rate; None = every cosine run peaks at train.optim.learning_rate."""
    lr_horizon_exponent: float | None = None
    """Peak rate of a cosine run of S steps = train.optim.learning_rate * (S / lr_horizon_steps)^-this
    (None: off): the optimal rate falls as the horizon grows (longer runs anneal more), so one rate
    for runs of 200 to 20,000 steps under-trains the long ones. Recorded per run in the results table."""
    wsd: WSDConfig | None = None
    """Also run warmup-stable-decay twins of the cosine runs (see WSDConfig); None = cosine only."""
    transfer: TransferConfig | None = None
    """A learning-rate transfer sweep instead of the IsoFLOP grid (budgets and sizes unused; see
    TransferConfig); None = an IsoFLOP sweep."""
    adaptive: AdaptiveConfig | None = None
    """Train the budgets in ascending stages with sizes centred on the forecast (AdaptiveConfig);
    None = every budget's sizes fixed before anything trains."""
    encdec: EncDecConfig | None = None
    """An encoder-decoder sweep over encoder and decoder sizes instead of the IsoFLOP grid (budgets
    and sizes unused; see EncDecConfig); None = an IsoFLOP (or transfer) sweep."""
    exec: ExecConfig = dataclasses.field(default_factory=ExecConfig)
    """How to execute (not part of the sweep's identity)."""
    out_dir: str | None = None
    """Sweep folder; None = sweeps/<name>."""

    @property
    def directory(self) -> str:
        return self.out_dir or os.path.join("sweeps", self.name)

    @property
    def tokens_per_step(self) -> int:
        """Tokens of one optimizer step of every run: train.batch_size x train.data.seq_len."""
        return self.train.batch_size * self.train.data.seq_len

    def validate(self) -> "SweepConfig":
        check_fields(self)
        if not self.budgets:
            raise ValueError("budgets is empty; give at least one compute budget in FLOPs, e.g. (1e11,)")
        if min(self.budgets) <= 0:
            raise ValueError(f"budgets {self.budgets} must all be positive FLOP counts")
        if len(set(self.budgets)) != len(self.budgets):
            raise ValueError(f"budgets {self.budgets} repeat a value; list each budget once")
        if self.convention not in CONVENTIONS:
            raise ValueError(f"convention {self.convention!r} is not known; pick one of {list(CONVENTIONS)}")
        for name in ("min_steps", "evals_per_run"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 1")
        if self.checkpoints_per_run < 0:
            raise ValueError(f"checkpoints_per_run={self.checkpoints_per_run} must be >= 0")
        if self.lr_horizon_steps is not None and self.lr_horizon_steps < 1:
            raise ValueError(f"lr_horizon_steps={self.lr_horizon_steps} must be >= 1 optimizer steps, or None")
        if self.lr_horizon_exponent is not None and (self.lr_horizon_exponent < 0 or self.lr_horizon_steps is None):
            raise ValueError(f"lr_horizon_exponent={self.lr_horizon_exponent} needs lr_horizon_steps (the run "
                             "length the base rate is tuned at) and must be >= 0, e.g. 0.5")
        self.sizes.validate()
        self._validate_train()
        if self.wsd is not None:
            self.wsd.validate()
        if self.transfer is not None:
            self.transfer.validate()
            if self.wsd is not None:
                raise ValueError("a transfer sweep (transfer=...) has no IsoFLOP runs to branch WSD cooldowns "
                                 "from; set wsd=None or transfer=None")
        if self.encdec is not None:
            self._validate_encdec()
        if self.adaptive is not None:
            self.adaptive.validate()
            if self.sizes.range is None or self.sizes.window is None or self.wsd or self.transfer or self.encdec:
                raise ValueError("an adaptive sweep draws its sizes from the ladder of a windowed range: set sizes.range "
                                 "and sizes.window, and wsd, transfer and encdec to None (or adaptive=None)")
        self.exec.validate()
        if self.train.batch_size % self.exec.processes_per_run:
            raise ValueError(f"train.batch_size={self.train.batch_size} does not split over the "
                             f"{self.exec.processes_per_run} processes of each run (exec.nodes x exec.tasks_per_node); "
                             f"pick a batch_size that is a multiple of {self.exec.processes_per_run}")
        return self

    def _validate_train(self) -> None:
        """The template: PER_RUN_FIELDS left unset, and valid as a run of min_steps steps."""
        default = TrainConfig()
        for name, how in PER_RUN_FIELDS.items():
            if _get(self.train, name) != _get(default, name):
                raise ValueError(f"train.{name}={_get(self.train, name)!r}: the plan sets each run's {name} {how}; "
                                 f"leave train.{name} out of the sweep's template")
        if self.train.optim.warmup_steps >= self.min_steps:
            raise ValueError(f"train.optim.warmup_steps={self.train.optim.warmup_steps} is not below min_steps="
                             f"{self.min_steps}; lower the warmup or raise min_steps")
        model = dataclasses.replace(self.train.model, max_seq_len=self.train.data.seq_len)
        try:
            dataclasses.replace(self.train, model=model, steps=self.min_steps).validate()
        except ValueError as e:
            raise ValueError(f"train (the sweep's template of every run): {e}") from None

    def _validate_encdec(self) -> None:
        self.encdec.validate()
        if self.transfer is not None or self.wsd is not None:
            raise ValueError("an encoder-decoder sweep (encdec=...) is its own grid; set transfer=None and wsd=None")
        if self.train.data.source != "translation":
            raise ValueError(f"encdec sweeps train on paired data; train.data.source={self.train.data.source!r}: "
                             "set train.data.source='translation'")
        bad = [w for w in self.encdec.widths if w % self.sizes.head_dim]
        if bad:
            raise ValueError(f"encdec.widths {bad} are not multiples of sizes.head_dim={self.sizes.head_dim}")

    def identity(self) -> dict[str, Any]:
        """What sweep.json records: everything that changes the numbers (not exec, not out_dir)."""
        values = to_dict(self)
        values.pop("exec")
        values.pop("out_dir")
        return values


def replace(config: Any, **changes: Any) -> Any:
    """dataclasses.replace that also takes dotted keys for nested configs:
    replace(cfg, **{"exec.workers": 1, "sizes.targets": (2e4, 4e4), "train.batch_size": 16})."""
    nested: dict[str, dict[str, Any]] = {}
    flat = {}
    for key, value in changes.items():
        head, dot, rest = key.partition(".")
        if dot:
            nested.setdefault(head, {})[rest] = value
        else:
            flat[key] = value
    for head, sub in nested.items():
        flat[head] = replace(getattr(config, head), **sub)
    return dataclasses.replace(config, **flat)


def names() -> list[str]:
    """The named sweeps: the config files in this folder."""
    here = os.path.dirname(os.path.abspath(__file__))
    return sorted(f[:-3] for f in os.listdir(here) if f.endswith(".py") and not f.startswith("_"))


def load(name_or_path: str) -> SweepConfig:
    """A SweepConfig from a config name in this folder ('default') or a path to a Python file
    defining `get_config()` (or `config`)."""
    if name_or_path.endswith(".py") or os.sep in name_or_path:
        if not os.path.isfile(name_or_path):
            raise ValueError(f"sweep config file {name_or_path} does not exist")
        namespace = runpy.run_path(name_or_path)
    else:
        if name_or_path not in names():
            raise ValueError(f"no sweep config named {name_or_path!r}; known: {names()}, or pass a path "
                             "to a .py file defining get_config()")
        namespace = vars(importlib.import_module(f"experiments.configs.{name_or_path}"))
    if "get_config" in namespace:
        config = namespace["get_config"]()
    elif "config" in namespace:
        config = namespace["config"]
    else:
        raise ValueError(f"{name_or_path} defines neither get_config() nor config")
    if not isinstance(config, SweepConfig):
        raise ValueError(f"{name_or_path} returned {type(config).__name__}, not a SweepConfig")
    return check_fields(config, strict=False).validate()


_FORMER_TOP_LEVEL = ("model", "data", "optim", "batch_size", "seq_len", "eval_batches", "seed")
"""Fields a sweep.json written before the `train` template held at its top level."""


def from_dict(values: dict[str, Any]) -> SweepConfig:
    """Rebuild a SweepConfig from sweep.json (identity) values, each field checked against its type.
    A sweep.json from before the `train` template (model, data, optim, batch_size, seq_len,
    eval_batches and seed at the top) reads as the template those fields made."""
    return lm_from_dict(SweepConfig, with_train_template(values))


def with_train_template(values: dict[str, Any]) -> dict[str, Any]:
    """sweep.json values in the current layout (see from_dict); values already in it are returned as they are."""
    if "train" in values or not any(k in values for k in _FORMER_TOP_LEVEL):
        return values
    out = {k: v for k, v in values.items() if k not in _FORMER_TOP_LEVEL}
    train = json.loads(json.dumps(to_dict(train_template())))
    for key in ("model", "data", "optim", "batch_size", "eval_batches", "seed"):
        if key in values:
            train[key] = values[key]
    if "seq_len" in values:
        train["data"] = {**train["data"], "seq_len": values["seq_len"]}
    out["train"] = train
    return out
