"""A sweep whose model says compute_dtype='auto' trains every run in ONE concrete dtype, decided once by
the orchestrator and recorded in sweep.json; a resumed sweep keeps the recorded one."""

import json
import os

import pytest

from experiments import results as results_lib
from experiments import runner
from experiments.configs import replace
from lm import precision


def _read(path):
    with open(path) as f:
        return json.load(f)


def _run_dtypes(cfg) -> set:
    runs = os.path.join(cfg.directory, "runs")
    return {_read(os.path.join(runs, r, "config.json"))["model"]["compute_dtype"] for r in os.listdir(runs)}


@pytest.mark.slow
def test_an_auto_sweep_trains_every_run_in_one_recorded_dtype(tiny):
    cfg = tiny(targets=(5e3, 9e3), budgets=(4e8,))
    assert cfg.train.model.compute_dtype == "auto"
    outcome = runner.run_sweep(cfg)
    assert len(outcome.trained) == 2 and not outcome.failed
    recorded = _read(os.path.join(cfg.directory, results_lib.SWEEP_FILE))["train"]["model"]["compute_dtype"]
    choice = _read(os.path.join(cfg.directory, runner.DTYPE_FILE))
    assert _run_dtypes(cfg) == {recorded} == {choice["dtype"]} and choice["by"] == "table"
    again = runner.run_sweep(cfg)                      # resumed: nothing to train, no "different sweep"
    assert again.trained == [] and _read(os.path.join(cfg.directory, runner.DTYPE_FILE)) == choice


def test_a_resumed_auto_sweep_keeps_the_dtype_its_folder_recorded(tiny):
    cfg = tiny()
    plan = runner.prepare(cfg)
    first = plan.config.train.model.compute_dtype
    assert first in precision.CONCRETE
    assert {r.train_config(plan.config, cfg.directory).model.compute_dtype for r in plan.runs} == {first}
    # As if the sweep had been recorded in the other dtype (an older table, another machine):
    path = os.path.join(cfg.directory, results_lib.SWEEP_FILE)
    identity = _read(path)
    other = "float32" if first == "bfloat16" else "bfloat16"
    identity["train"]["model"]["compute_dtype"] = other
    with open(path, "w") as f:
        json.dump(identity, f)
    plan = runner.prepare(cfg)                         # 'auto' reads the record: no "different config"
    assert plan.config.train.model.compute_dtype == other
    sweep = runner._Sweep(cfg, plan, print)
    assert {c["model"]["compute_dtype"] for c in sweep.configs.values()} == {other}
    with pytest.raises(ValueError, match="model.compute_dtype differ"):
        runner.prepare(replace(cfg, **{"train.model.compute_dtype": first}))    # an explicit change is refused


def test_explicit_dtypes_and_submitit_sweeps_are_left_as_they_are(tiny):
    explicit = replace(tiny(), **{"train.model.compute_dtype": "float32"})
    assert runner.resolve_dtype(explicit, runner.make_plan(explicit)) == (explicit, None)
    remote = replace(tiny(), **{"exec.backend": "submitit"})       # its runs resolve on their machines
    assert runner.resolve_dtype(remote, runner.make_plan(remote)) == (remote, None)
