"""The named sweeps plan what their docstrings promise (planning only: nothing trains)."""

import math

from experiments import configs
from experiments.plan import make_plan


def _planned_flops(plan):
    """Training FLOPs of the cosine runs, and of WSD (trunks + each cooldown's steps past its branch)."""
    cosine = sum(r.compute for r in plan.runs if r.kind == "cosine")
    trunks = sum(r.compute for r in plan.runs if r.kind == "wsd_constant")
    own = sum(r.compute * (r.steps - r.branch_step) / r.steps for r in plan.runs if r.kind == "wsd_cooldown")
    return cosine, trunks + own


def test_default_sweep_spans_100x_in_at_least_5_budgets_with_mup_at_one_depth():
    cfg = configs.load("default")
    plan = make_plan(cfg)
    assert len(cfg.budgets) >= 5 and max(cfg.budgets) / min(cfg.budgets) >= 100
    cosine = [r for r in plan.runs if r.kind == "cosine"]
    assert {r.budget for r in cosine} == set(cfg.budgets)
    assert {r.shape.n_layers for r in cosine} == {2}                 # muP transfers across width only
    assert all(r.shape.d_model % cfg.train.model.mup_base_width == 0 for r in cosine)


def test_wsd_sweep_uses_at_most_60_percent_of_the_cosine_flops_on_the_same_points():
    cfg = configs.load("wsd")
    plan = make_plan(cfg)
    cosine, wsd = _planned_flops(plan)
    assert wsd <= 0.60 * cosine, f"WSD plans {wsd / cosine:.1%} of cosine's FLOPs"
    twins = {(r.shape.name, r.budget) for r in plan.runs if r.kind == "cosine"}
    cooled = {(r.shape.name, r.budget) for r in plan.runs if r.kind == "wsd_cooldown"}
    assert cooled == twins                                           # every WSD point has a cosine twin
    # The saving comes from dense budgets: each trunk serves several budgets.
    trunks = [r for r in plan.runs if r.kind == "wsd_constant"]
    assert len(cooled) / len(trunks) >= 5


def test_large_sweep_is_the_default_recipe_on_larger_budgets():
    default, large = configs.load("default"), configs.load("large")
    assert large.train == default.train
    assert math.isclose(max(large.budgets) / min(large.budgets), 100)
    assert max(large.budgets) > max(default.budgets)


def test_the_horizon_rule_lowers_the_peak_rate_of_long_runs_and_is_recorded_per_run():
    from experiments.configs import replace
    one_rate = replace(configs.load("default"), lr_horizon_steps=None, lr_horizon_exponent=None)
    cfg = replace(one_rate, lr_horizon_steps=400, lr_horizon_exponent=0.5)
    assert all(r.learning_rate is None for r in make_plan(one_rate).runs)   # one rate
    plan = make_plan(cfg)
    for r in plan.runs:
        expected = cfg.train.optim.learning_rate * (cfg.lr_horizon_steps / r.steps) ** cfg.lr_horizon_exponent
        assert math.isclose(r.learning_rate, expected, rel_tol=1e-12)
        tc = r.train_config(cfg, cfg.directory)
        assert tc.optim.learning_rate == r.learning_rate
    longest = max(plan.runs, key=lambda r: r.steps)
    shortest = min(plan.runs, key=lambda r: r.steps)
    assert longest.learning_rate < cfg.train.optim.learning_rate < shortest.learning_rate


def test_a_horizon_exponent_without_its_reference_length_is_refused():
    import pytest

    from experiments.configs import replace
    with pytest.raises(ValueError, match="needs lr_horizon_steps"):
        replace(configs.load("default"), lr_horizon_steps=None, lr_horizon_exponent=0.5).validate()
    with pytest.raises(ValueError, match="lr_horizon_steps=0 must be >= 1"):
        replace(configs.load("default"), lr_horizon_steps=0, lr_horizon_exponent=0.5).validate()


def test_a_sweep_folder_recorded_before_a_field_existed_resumes_and_a_changed_field_is_refused(tmp_path):
    import json

    import pytest

    from experiments.configs import replace
    from experiments.results import SWEEP_FILE, check_sweep_dir
    cfg = replace(configs.load("default"), out_dir=str(tmp_path / "sweep"), lr_horizon_steps=None,
                  lr_horizon_exponent=None)
    (tmp_path / "sweep").mkdir()
    old = cfg.identity()
    del old["lr_horizon_exponent"], old["train"]["data"]["translation_noise"]      # fields added since
    (tmp_path / "sweep" / SWEEP_FILE).write_text(json.dumps(old))
    check_sweep_dir(cfg)                                                  # read as their defaults
    for changed in (replace(cfg, lr_horizon_steps=400, lr_horizon_exponent=0.5),
                    replace(cfg, **{"train.data.translation_noise": 0.2})):
        with pytest.raises(ValueError, match="made by a different config"):
            check_sweep_dir(changed)


def test_a_sweep_json_from_before_the_train_template_reads_as_the_same_sweep(tmp_path):
    """sweep.json once held model, data, optim, batch_size, seq_len, eval_batches and seed at its top
    level: such a folder reads as the template those fields make, resumes, and a change is refused."""
    import json

    import pytest

    from experiments.configs import from_dict, replace
    from experiments.results import SWEEP_FILE, check_sweep_dir
    for name in ("default", "encdec"):
        cfg = replace(configs.load(name), out_dir=str(tmp_path / name))
        new = cfg.identity()
        train = new.pop("train")
        old = {**new, "model": train["model"], "optim": train["optim"], "data": train["data"],
               "batch_size": train["batch_size"], "seq_len": train["data"]["seq_len"],
               "eval_batches": train["eval_batches"], "seed": train["seed"]}
        old["data"] = {**old["data"], "seq_len": 128}          # the old layout's seq_len overrode data's
        assert from_dict(json.loads(json.dumps(old))).identity() == cfg.identity()
        (tmp_path / name).mkdir()
        (tmp_path / name / SWEEP_FILE).write_text(json.dumps(old))
        check_sweep_dir(cfg)
        with pytest.raises(ValueError, match="train.batch_size differ"):
            check_sweep_dir(replace(cfg, **{"train.batch_size": 2 * cfg.train.batch_size}))


def test_a_sweep_template_leaves_the_per_run_fields_to_the_plan_and_passes_the_rest_on():
    """Every PER_RUN_FIELDS entry set in the template is refused, naming where it comes from; any
    other template field reaches every run's TrainConfig as it is."""
    import dataclasses

    import pytest

    from experiments.configs import PER_RUN_FIELDS, replace
    from lm.config import TrainConfig
    cfg = configs.load("default")
    with pytest.raises(ValueError, match=r"train.model.n_layers=3: the plan sets each run's model.n_layers "
                                         r"by the size rule \(fix the depth with sizes.min_layers"):
        replace(cfg, **{"train.model.n_layers": 3}).validate()
    changed_value = {int: 500, float: 0.5, str: "x", tuple: (5,), type(None): 8}
    for name in PER_RUN_FIELDS:
        default = TrainConfig()
        for part in name.split("."):
            default = getattr(default, part)
        value = "runs/trunk@3" if name == "init_from" else changed_value[type(default)]
        with pytest.raises(ValueError, match=f"train.{name}=.*the plan sets each run's {name}"):
            replace(cfg, **{f"train.{name}": value}).validate()
    changed = replace(cfg, **{"train.tensorboard": True, "train.keep_checkpoints": 3, "train.log_every": 5,
                              "train.optim.b2": 0.99, "train.data.synthetic_zipf": 1.2})
    for spec in make_plan(changed).runs:
        tc = spec.train_config(changed, "/tmp/sweep")
        base = spec.train_config(cfg, "/tmp/sweep")
        assert tc == dataclasses.replace(base, tensorboard=True, keep_checkpoints=3, log_every=5,
                                         optim=dataclasses.replace(base.optim, b2=0.99),
                                         data=dataclasses.replace(base.data, synthetic_zipf=1.2))


def test_a_finished_run_whose_recorded_config_differs_only_in_resume_changes_is_recorded(tiny):
    """lm.config.RESUME_CHANGES is the one list of fields that may differ between a plan and the run
    it finished (as between a run and its resumption in lm.train): such a run is recorded, any other
    difference refused."""
    import dataclasses
    import json
    import os

    import pytest

    from experiments import runner
    from lm.config import RESUME_CHANGES
    cfg = tiny()
    spec = make_plan(cfg).runs[0]
    config = json.loads(json.dumps(dataclasses.asdict(spec.train_config(cfg, cfg.directory))))
    os.makedirs(config["out_dir"])
    with open(os.path.join(config["out_dir"], "result.json"), "w") as f:
        json.dump({"status": "completed", "loss": 1.0}, f)
    assert set(RESUME_CHANGES) >= {"mesh", "init_from", "out_dir"}
    for recorded in (dict(config, mesh={"data": 2, "fsdp": 4, "tensor": 1}, init_from="elsewhere@3",
                          peak_flops=1e12, tensorboard=True), dict(config, seed=1)):
        with open(os.path.join(config["out_dir"], "config.json"), "w") as f:
            json.dump(recorded, f)
        if recorded["seed"] == config["seed"]:
            assert runner.finished_result(spec, cfg)["status"] == "completed"
        else:
            with pytest.raises(ValueError, match="trained with a different config"):
                runner.finished_result(spec, cfg)
