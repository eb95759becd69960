"""Planning: shapes from sizes, tokens from budgets, infeasible points dropped, WSD branches, bad input."""

import json
import math

import pytest

from experiments import configs
from experiments.configs import SizeConfig, SweepConfig, WSDConfig
from experiments.plan import format_plan, make_plan, shape_for, shapes_for_budget
from lm import flops as flops_lib
from lm.config import ModelConfig
from lm.optim import make_schedule


def test_aspect_rule_is_monotone_and_near_target():
    sizes = SizeConfig(targets=(1e4,), aspect=16.0, width_step=4, head_dim=8, min_layers=2)
    template = ModelConfig(vocab_size=64, max_seq_len=64)
    previous = None
    for target in [1e4 * 1.25 ** k for k in range(16)]:
        shape = shape_for(target, sizes, template)
        model = shape.model(template, 64).validate()
        n = flops_lib.param_counts(model).non_embedding
        assert abs(math.log(n / target)) < math.log(1.35), (target, shape, n)
        assert shape.n_layers >= 2 and shape.d_model % 4 == 0
        if previous is not None:           # depth and width never shrink as N grows
            assert shape.d_model >= previous.d_model or shape.n_layers > previous.n_layers
            assert shape.n_layers >= previous.n_layers
        previous = shape


def test_tokens_steps_and_cosine_cycle_follow_the_budget(tiny, tmp_path):
    cfg = tiny()
    plan = make_plan(cfg)
    assert len(plan.runs) == 4 and not plan.dropped
    for spec in plan.runs:
        tc = spec.train_config(cfg, cfg.directory)
        fpt = flops_lib.flops_per_token(tc.model, cfg.seq_len, "6n")
        assert spec.flops_per_token == fpt
        assert spec.tokens == spec.steps * cfg.batch_size * cfg.seq_len == tc.steps * 8 * 32
        assert abs(spec.steps - spec.budget / fpt / (8 * 32)) <= 0.5          # D = C / FLOPs per token
        assert tc.optim.schedule == "cosine" and tc.steps == spec.steps     # cycle = run length
        schedule = make_schedule(tc.optim, tc.steps)
        assert float(schedule(tc.steps)) == pytest.approx(tc.optim.final_lr_frac * tc.optim.learning_rate)
        assert tc.out_dir.endswith(f"runs/{spec.run_id}") and tc.schedule_on_host
    text = format_plan(plan)
    for column in ("N", "D", "D/N", "C budget", "steps"):
        assert column in text


def test_infeasible_points_are_dropped_with_the_reason(tiny):
    plan = make_plan(tiny(budgets=(1e9, 1e10), targets=(5e3, 2e4), min_steps=60))
    assert len(plan.runs) == 3 and len(plan.dropped) == 1
    assert plan.dropped[0].budget == 1e9 and plan.dropped[0].params_nonembed > 15000
    assert "only 32 steps" in plan.dropped[0].reason and "min_steps=60" in plan.dropped[0].reason
    assert "Dropped" in format_plan(plan) and plan.dropped[0].reason in format_plan(plan)


def test_range_gives_k_distinct_feasible_sizes_per_budget():
    cfg = configs.load("default")
    plan = make_plan(cfg)
    for budget in cfg.budgets:
        shapes = shapes_for_budget(cfg, budget)
        assert len(shapes) == cfg.sizes.per_budget == len({s.name for s in shapes})
        assert all(r.steps >= cfg.min_steps for r in plan.runs if r.budget == budget)
    assert max(cfg.budgets) / min(cfg.budgets) >= 30 and len(cfg.budgets) >= 4


def test_wsd_branches_match_their_cosine_twins(tiny):
    cfg = tiny(wsd=WSDConfig(cooldown_frac=0.25))
    plan = make_plan(cfg)
    runs = plan.by_id()
    trunks = [r for r in plan.runs if r.kind == "wsd_constant"]
    cooldowns = [r for r in plan.runs if r.kind == "wsd_cooldown"]
    assert len(trunks) == 2 and len(cooldowns) == 4
    for cool in cooldowns:
        twin = runs[cool.run_id.replace("wsd-", "cos-")]
        trunk = runs[cool.parent]
        assert (cool.params, cool.tokens) == (twin.params, twin.tokens)
        assert cool.branch_step in trunk.checkpoint_steps and trunk.steps == max(trunk.checkpoint_steps)
        tc = cool.train_config(cfg, cfg.directory)
        assert tc.optim.schedule == "wsd" and tc.init_from.endswith(f"{trunk.run_id}@{cool.branch_step}")
        assert round(tc.optim.decay_frac * tc.steps) == tc.steps - cool.branch_step
        # The cooldown starts at the branch step: same learning rate as the constant trunk up to it.
        lr = make_schedule(tc.optim, tc.steps)
        assert float(lr(cool.branch_step)) == pytest.approx(cfg.optim.learning_rate)
        assert float(lr(tc.steps)) == pytest.approx(cfg.optim.learning_rate * cfg.optim.final_lr_frac)
        tt = trunk.train_config(cfg, cfg.directory)
        assert tt.optim.schedule == "constant" and tt.keep_checkpoints > len(trunk.checkpoint_steps)


@pytest.mark.parametrize("change,match", [
    ({"sizes.rule": "golden"}, "size rule 'golden' is not known"),
    ({"budgets": (1e3, 3e8)}, r"budget\(s\) \['1e\+03'\] have no feasible point"),
    ({"budgets": ()}, "budgets is empty"),
    ({"convention": "6nd"}, "convention '6nd' is not known"),
    ({"sizes.targets": (), "sizes.range": None}, "either as sizes.targets"),
    ({"exec.backend": "mpi"}, "backend 'mpi' is not known"),
    ({"wsd": WSDConfig(sizes=("d999-L9",))}, "not shapes of this sweep"),
])
def test_bad_input_is_a_clear_error(tiny, change, match):
    with pytest.raises(ValueError, match=match):
        make_plan(configs.replace(tiny(), **change))


def test_load_names_and_files(tmp_path):
    assert isinstance(configs.load("default"), SweepConfig)
    with pytest.raises(ValueError, match="no sweep config named 'nope'"):
        configs.load("nope")
    bad = tmp_path / "bad.py"
    bad.write_text("x = 1\n")
    with pytest.raises(ValueError, match="defines neither"):
        configs.load(str(bad))
    cfg = configs.load("default")        # the sweep.json round trip
    assert configs.from_dict(json.loads(json.dumps(cfg.identity()))).identity() == cfg.identity()
