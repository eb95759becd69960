"""Sweep overrides on the command line (`lm-sweep plan|run CONFIG key=value ...`), typed and refused
in one line like lm-train's, and `--help-config`: every field of lm-sweep's and lm-train's configs by
section, with its documentation."""

import dataclasses
import os
import typing

import pytest

from experiments import configs, sweep
from experiments.sweep_sections import WSDConfig
from lm import train as train_lib
from lm.config_fields import section_type
from lm.config_io import apply_overrides, field_docs

from tiny_sweeps import write_config


def test_overrides_set_any_field_of_a_sweep_with_its_type():
    cfg = configs.load("default")
    got = apply_overrides(cfg, ["exec.workers=1", "budgets=[1e10, 3e10]", "train.batch_size=16",
                                "train.optim.learning_rate=0.1", "sizes.range=(1e3, 1e5)", "name=mine",
                                "wsd.cooldown_frac=0.3", 'exec.slurm=[["slurm_partition", "gpu"]]',
                                "train.data.source=synthetic", "lr_horizon_steps=null"])
    want = configs.replace(cfg, name="mine", budgets=(1e10, 3e10), wsd=WSDConfig(cooldown_frac=0.3),
                           **{"exec.workers": 1, "train.batch_size": 16, "train.optim.learning_rate": 0.1,
                              "sizes.range": (1e3, 1e5), "exec.slurm": (("slurm_partition", "gpu"),)})
    assert got == want and isinstance(got.budgets, tuple) and isinstance(got.exec.workers, int)
    assert apply_overrides(cfg, []) == cfg


@pytest.mark.parametrize("override, match", [
    ("train.model.d_model=x", r"^train.model.d_model='x' \(str\) must be an integer"),
    ('budgets=[1e10, "a"]', r"^budgets=.* must be a list whose items are each a finite number"),
    ("exec.workers=1.5", r"^exec.workers=1.5 .*must be an integer"),
    ("wsd.cooldown_frac=true", r"^wsd.cooldown_frac=True \(bool\) must be a finite number"),
    ("sizes.range=[1, 2, 3]", r"^sizes.range=.*must be a list of 2 items"),
    ("train.nope=1", r"unknown field 'nope'"),
    ("nope.x=1", r"'nope' is not a config section; sections: \['adaptive', 'encdec', 'exec', 'sizes', 'train'"),
    ("budgets", r"is not key=value"),
])
def test_a_bad_override_is_one_line_naming_it(override, match):
    with pytest.raises(ValueError, match=match) as err:
        apply_overrides(configs.load("default"), [override])
    assert "\n" not in str(err.value)


def test_lm_sweep_plan_takes_overrides_in_any_order_with_its_options(tmp_path, capsys):
    path = write_config(tmp_path / "tiny.py")
    assert sweep.main(["plan", path, "budgets=[4e8]", "--probe", "0", "train.batch_size=16"]) == 0
    out = capsys.readouterr().out
    assert "1 budgets" in out and "batch 16 x 32" in out
    assert all(" 4e8 " in line for line in out.splitlines()[3:] if line.startswith("cos-"))


@pytest.mark.parametrize("command", ["plan", "run"])
@pytest.mark.parametrize("override, match", [
    ("train.model.n_layers=3", "fix the depth with sizes.min_layers and sizes.max_layers"),
    ("train.optim.warmup_steps=500", "is not below min_steps"),
    ("train.model.d_model=x", "must be an integer"),
])
def test_lm_sweep_refuses_a_bad_override_in_one_line_before_writing(tmp_path, capsys, command, override, match):
    path = write_config(tmp_path / "tiny.py")
    out = tmp_path / "sweep"
    assert sweep.main([command, path, override, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("lm-sweep: error: ") and match in err and "\n" not in err
    assert not os.path.exists(out)


def _fields(config, prefix=""):
    """(dotted key, its docstring) of every field that is not a set section, recursively."""
    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if section_type(hints[f.name]) is not None and value is not None:
            yield from _fields(value, f"{prefix}{f.name}.")
        else:
            yield f"{prefix}{f.name}", field_docs(type(config)).get(f.name)


@pytest.mark.parametrize("main, config", [
    (sweep.main, lambda: configs.load("default")),
    (train_lib.main, train_lib.default_config),
])
def test_help_config_lists_every_field_by_section_with_its_documentation(capsys, main, config):
    with pytest.raises(SystemExit) as exit_:
        main(["--help-config"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    listed = out.splitlines()
    fields = list(_fields(config()))
    assert len(fields) > 40
    for key, doc in fields:
        assert doc, f"{key} has no docstring under it"
        line = next(i for i, text in enumerate(listed) if text.startswith(f"  {key} = "))
        assert listed[line + 1].strip() == doc.splitlines()[0].strip()
    sections = [text for text in listed if text.startswith("[")]
    assert len(sections) == len({key.rsplit(".", 1)[0] for key, _ in fields if "." in key}) + 1
