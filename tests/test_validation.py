"""Strict validation before anything is written or compiled: field types from the annotations,
NaN/Inf, --config files, multi-process flags, out_dir, init_from shapes, peak_flops, memory; and a
property test over random overrides (a valid config or one clear line, never a traceback)."""

import dataclasses
import json
import math
import os
import shutil

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lm.config import DataConfig, ModelConfig, OptimConfig, TrainConfig
from lm.config_fields import check_fields, to_dict
from lm.config_io import apply_overrides
from lm.memory import check_fits, estimate
from lm.train import main, train


def tiny(out_dir, **kw) -> TrainConfig:
    base = TrainConfig(
        model=ModelConfig(vocab_size=64, d_model=32, n_layers=2, n_heads=2, max_seq_len=32, d_ff=64,
                          compute_dtype="float32"),
        data=DataConfig(seq_len=32), optim=OptimConfig(learning_rate=1e-2, warmup_steps=2),
        steps=4, batch_size=8, eval_every=0, eval_batches=1, log_every=2, checkpoint_every=2,
        out_dir=str(out_dir), peak_flops=1e11, progress=False, tensorboard=False)
    return dataclasses.replace(base, **kw)


@pytest.mark.parametrize("override, match", [
    ('model.tie_embeddings="no"', "model.tie_embeddings='no' .* must be true or false"),
    ("model.remat=no", "model.remat='no' .* must be true or false"),
    ("model.use_bias=1", "model.use_bias=1 .* must be true or false"),
    ('checkpoint_steps="12"', "checkpoint_steps='12' .* must be a list"),
    ('checkpoint_steps=[2, "x"]', "checkpoint_steps=.* must be a list whose items are each an integer"),
    ("model.d_model=32.5", "model.d_model=32.5 .* must be an integer"),
    ('model.n_kv_heads="4"', "model.n_kv_heads='4' .* must be an integer or null"),
    ('data.max_documents="all"', "data.max_documents='all' .* must be an integer or null"),
    ("model=5", "model=5 .* must be a ModelConfig section"),
    ("model.max_seq_len=40.5", "model.max_seq_len=40.5 .* must be an integer"),
    ("optim.grad_accum=0.5", "optim.grad_accum=0.5 .* must be an integer"),
    ("optim.learning_rate=NaN", "optim.learning_rate=nan is not a finite number"),
    ("optim.weight_decay=Infinity", "optim.weight_decay=inf is not a finite number"),
    ("optim.clip_norm=NaN", "optim.clip_norm=nan is not a finite number"),
    ("peak_flops=-Infinity", "peak_flops=-inf is not a finite number"),
    ("peak_flops=0", "peak_flops=0.0 must be a positive"),
    ('out_dir=""', "out_dir is empty"),
    ("steps=true", "steps=True .* must be an integer"),
])
def test_every_field_is_checked_against_its_annotation(tmp_path, override, match):
    with pytest.raises(ValueError, match=match):
        apply_overrides(tiny(tmp_path / "run"), [override]).validate(8)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("change, match", [
    (dict(model=ModelConfig(tie_embeddings="no")), "model.tie_embeddings='no'"),
    (dict(optim=OptimConfig(learning_rate=float("nan"))), "optim.learning_rate=nan"),
    (dict(checkpoint_steps=(2.0,)), "checkpoint_steps=.* must be a list whose items are each an integer"),
    (dict(peak_flops=float("inf")), "peak_flops=inf"),
    (dict(peak_flops=-1.0), "peak_flops=-1.0 must be a positive"),
])
def test_train_refuses_wrong_types_before_writing(tmp_path, change, match):
    with pytest.raises(ValueError, match=match):
        train(dataclasses.replace(tiny(tmp_path / "run"), **change))
    assert not (tmp_path / "run").exists()


def test_integral_numbers_from_json_become_ints(tmp_path):
    cfg = apply_overrides(tiny(tmp_path / "run"), ["model.d_model=64.0", "steps=1e2", "checkpoint_steps=[2, 4]"])
    assert cfg.model.d_model == 64 and type(cfg.steps) is int and cfg.checkpoint_steps == (2, 4)
    assert check_fields(cfg) is cfg


CONFIG_FILES = [
    ("bad.py", "def get_config(:\n", "syntax error at line 1"),
    ("none.py", "x = 1\n", "defines neither `config` nor `get_config()`"),
    ("raises.py", "def get_config():\n    return 1 / 0\n", "raised ZeroDivisionError"),
    ("unknown.json", json.dumps({"stepz": 3}), "unknown TrainConfig field(s) ['stepz']"),
    ("unknown.py", "from lm.config import TrainConfig\nconfig = {'model': {'d_modle': 3}}\n",
     "unknown ModelConfig field(s) ['model.d_modle']"),
    ("broken.json", '{"steps": 3', "not valid JSON at line 1"),
    ("list.json", "[1, 2]", "its config is a list, not a TrainConfig"),
    ("wrong.py", "config = 5\n", "its config is a int, not a TrainConfig"),
]


@pytest.mark.parametrize("name, text, match", CONFIG_FILES)
def test_config_file_errors_are_one_line_and_exit_2(tmp_path, capsys, name, text, match):
    path = tmp_path / name
    path.write_text(text)
    assert main(["--config", str(path)]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"lm-train: error: --config {path}: ") and match in line


def test_missing_config_file_and_processes_without_coordinator(tmp_path, capsys):
    assert main(["--config", str(tmp_path / "nope.py")]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert "nope.py: no such file" in line
    assert main(["--num-processes", "2", f"out_dir={tmp_path / 'run'}"]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert "--num-processes 2" in line and "without a coordinator address; pass --coordinator HOST:PORT" in line
    assert not (tmp_path / "run").exists()


def test_out_dir_that_is_a_file_empty_or_unwritable(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is an existing file"):
        train(tiny(tmp_path / "file"))
    monkeypatch.chdir(tmp_path / "cwd") if (tmp_path / "cwd").mkdir() is None else None
    with pytest.raises(ValueError, match="out_dir is empty"):
        train(tiny(""))
    assert os.listdir(tmp_path / "cwd") == []                  # no stray ./checkpoints
    if os.geteuid() != 0:                                      # root may write anywhere
        (tmp_path / "ro").mkdir(mode=0o500)
        with pytest.raises(ValueError, match="cannot be written"):
            train(tiny(tmp_path / "ro" / "run"))
        assert os.listdir(tmp_path / "ro") == []


def test_memory_estimate_refuses_a_run_that_cannot_fit(tmp_path):
    cfg = apply_overrides(tiny(tmp_path / "run"), ["model.vocab_size=1e9"])
    with pytest.raises(ValueError, match=r"cannot fit in memory: it needs about .* GiB per device \(params"):
        train(cfg)
    assert not (tmp_path / "run").exists()
    small = estimate(tiny(tmp_path / "run"), 8)
    assert small.fits() and 0 < small.per_device < 2**30
    big = estimate(cfg, 8)
    from lm.flops import param_counts
    assert big.params == 4 * param_counts(cfg.model).total >= 4 * 2 * 1e9 * 32     # float32, embed + unembed
    assert big.optimizer == 2 * big.params


@pytest.fixture(scope="module")
def parent(tmp_path_factory):
    cfg = tiny(tmp_path_factory.mktemp("parent") / "run")
    assert train(cfg)["status"] == "completed"
    return cfg


def test_init_from_a_run_of_another_shape_names_the_fields(parent, tmp_path):
    branch = tiny(tmp_path / "branch", model=dataclasses.replace(parent.model, d_model=48, n_heads=3),
                  init_from=f"{parent.out_dir}@2")
    with pytest.raises(ValueError, match=r"another shape \(model.d_model=32 here 48, model.n_heads=2 here 3\)"):
        train(branch)
    assert not (tmp_path / "branch").exists()


def test_config_json_is_written_only_after_the_restore_checks_pass(parent, tmp_path):
    source = str(tmp_path / "parent")
    shutil.copytree(parent.out_dir, source)
    with open(os.path.join(source, "checkpoints", "2", "data", "metadata"), "a") as f:
        f.write(" ")
    branch = tiny(tmp_path / "branch", init_from=f"{source}@2")
    with pytest.raises(ValueError, match="checkpoint step 2 .* is corrupt: data/metadata"):
        train(branch)
    assert not (tmp_path / "branch" / "config.json").exists()
    assert os.path.isdir(os.path.join(source, "checkpoints", "2"))      # another run's folder: not moved


# ---------------------------------------------------------------------------------------------
# Property: random overrides give a valid config or one clear ValueError line, before compile.

def _fields(cls, prefix=""):
    out = []
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(f.default_factory) if f.default_factory is not dataclasses.MISSING else False:
            out += _fields(f.default_factory, f"{f.name}.")
        out.append(prefix + f.name)
    return out


FIELDS = [f for f in _fields(TrainConfig) if f not in ("out_dir", "init_from", "data.data_dir", "data.tokenizer")]
VALUES = st.one_of(
    st.integers(-3, 300), st.sampled_from([0, 1, 2, 8, 16, 64, 1e9, 2**40]),
    st.floats(allow_nan=True, allow_infinity=True), st.booleans(), st.none(),
    st.text(max_size=6), st.lists(st.integers(-2, 40), max_size=3),
    st.sampled_from(["rope", "learned", "gelu", "wsd", "layernorm", "bfloat16", "synthetic", "tfds:"]),
    st.dictionaries(st.sampled_from(["d_model", "x"]), st.integers(1, 64), max_size=2))


def _text(value):
    return json.dumps(value) if not (isinstance(value, float) and not math.isfinite(value)) else \
        ("NaN" if value != value else ("Infinity" if value > 0 else "-Infinity"))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.sampled_from(FIELDS + ["model.nope", "nope.x"]), VALUES), min_size=1, max_size=3))
def test_random_overrides_give_a_valid_config_or_one_clear_error(tmp_path, overrides):
    base = tiny(tmp_path / "run")
    items = [f"{key}={_text(value)}" for key, value in overrides]
    try:
        cfg = apply_overrides(base, items)
        cfg.validate(8)
        check_fits(cfg, 8)
    except ValueError as e:
        text = str(e)
        assert text and "\n" not in text and len(text) < 1000, text
        return
    assert check_fields(cfg) is cfg                            # every field has its annotated type
    assert json.loads(json.dumps(to_dict(cfg), allow_nan=False)) is not None
    assert not (tmp_path / "run").exists()
    from lm.model import abstract_params
    abstract_params(cfg.model)                                 # the model traces (no compile)


@pytest.mark.parametrize("items, message", [
    (["data=0", "data.source=null"], r"must be a \w+ section; set its fields instead"),
    (["model=[1]", "model.d_model=8"], r"must be a \w+ section; set its fields instead"),
    (["model.d_model=4.740375954054589e+153"], r"model.d_model=.* does not fit in 64 bits"),
])
def test_values_the_property_test_found_are_one_clear_error(tmp_path, items, message):
    """Found by the property test above (when it drew at random): `data=0` then `data.source=...`
    was a TypeError, a d_model of 4.7e153 an OverflowError in the memory estimate."""
    with pytest.raises(ValueError, match=message):
        cfg = apply_overrides(tiny(tmp_path / "run"), items)
        cfg.validate(8)
        check_fits(cfg, 8)
