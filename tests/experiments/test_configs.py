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
    assert all(r.shape.d_model % cfg.model.mup_base_width == 0 for r in cosine)


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
    assert large.model == default.model and large.optim == default.optim and large.data == default.data
    assert math.isclose(max(large.budgets) / min(large.budgets), 100)
    assert max(large.budgets) > max(default.budgets)


def test_the_horizon_rule_lowers_the_peak_rate_of_long_runs_and_is_recorded_per_run():
    from experiments.configs import replace
    cfg = replace(configs.load("default"), lr_horizon_steps=400, lr_horizon_exponent=0.5)
    assert all(r.learning_rate is None for r in make_plan(configs.load("default")).runs)   # one rate
    plan = make_plan(cfg)
    for r in plan.runs:
        expected = cfg.optim.learning_rate * (cfg.lr_horizon_steps / r.steps) ** cfg.lr_horizon_exponent
        assert math.isclose(r.learning_rate, expected, rel_tol=1e-12)
        tc = r.train_config(cfg, cfg.directory)
        assert tc.optim.learning_rate == r.learning_rate
    longest = max(plan.runs, key=lambda r: r.steps)
    shortest = min(plan.runs, key=lambda r: r.steps)
    assert longest.learning_rate < cfg.optim.learning_rate < shortest.learning_rate


def test_a_horizon_exponent_without_its_reference_length_is_refused():
    import pytest

    from experiments.configs import replace
    with pytest.raises(ValueError, match="needs lr_horizon_steps"):
        replace(configs.load("default"), lr_horizon_exponent=0.5).validate()
    with pytest.raises(ValueError, match="lr_horizon_steps=0 must be >= 1"):
        replace(configs.load("default"), lr_horizon_steps=0, lr_horizon_exponent=0.5).validate()


def test_a_sweep_folder_recorded_before_a_field_existed_resumes_and_a_changed_field_is_refused(tmp_path):
    import json

    import pytest

    from experiments.configs import replace
    from experiments.results import SWEEP_FILE, check_sweep_dir
    cfg = replace(configs.load("default"), out_dir=str(tmp_path / "sweep"))
    (tmp_path / "sweep").mkdir()
    old = cfg.identity()
    del old["lr_horizon_exponent"], old["data"]["translation_noise"]      # fields added since
    (tmp_path / "sweep" / SWEEP_FILE).write_text(json.dumps(old))
    check_sweep_dir(cfg)                                                  # read as their defaults
    for changed in (replace(cfg, lr_horizon_steps=400, lr_horizon_exponent=0.5),
                    replace(cfg, data=replace(cfg.data, translation_noise=0.2))):
        with pytest.raises(ValueError, match="made by a different config"):
            check_sweep_dir(changed)
