"""Planning: shapes from sizes, tokens from budgets, infeasible points dropped, WSD branches, bad input."""

import json
import math

import pytest

from experiments import configs
from experiments.configs import SweepConfig
from experiments.plan import make_plan, shapes_for_budget
from experiments.plan_table import format_plan
from experiments.shapes import shape_for
from experiments.sweep_sections import SizeConfig, TransferConfig, WSDConfig
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
        fpt = flops_lib.flops_per_token(tc.model, cfg.train.data.seq_len, "6n")
        assert spec.flops_per_token == fpt
        assert spec.tokens == spec.steps * cfg.tokens_per_step == tc.steps * 8 * 32
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
    """per_budget distinct feasible sizes for every budget, or every feasible rung of the ladder where
    it has fewer (the default's smallest budget: 5 shapes, d8-d24, train >= min_steps steps), and
    never fewer than 5, what a parabola through its minimum needs."""
    from experiments.adaptive import rungs
    cfg = configs.load("default")
    plan = make_plan(cfg)
    for budget in cfg.budgets:
        shapes = shapes_for_budget(cfg, budget)
        k = min(cfg.sizes.per_budget, len(rungs(cfg, budget)))
        assert len(shapes) == k == len({s.name for s in shapes}) and k >= 5, (budget, [s.name for s in shapes])
        assert all(r.steps >= cfg.min_steps for r in plan.runs if r.budget == budget)
    assert max(cfg.budgets) / min(cfg.budgets) >= 100 and len(cfg.budgets) >= 5


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
        assert float(lr(cool.branch_step)) == pytest.approx(cfg.train.optim.learning_rate)
        assert float(lr(tc.steps)) == pytest.approx(cfg.train.optim.learning_rate * cfg.train.optim.final_lr_frac)
        tt = trunk.train_config(cfg, cfg.directory)
        assert tt.optim.schedule == "constant" and tt.keep_checkpoints > len(trunk.checkpoint_steps)


@pytest.mark.parametrize("change,match", [
    ({"sizes.rule": "golden"}, "size rule 'golden' is not known"),
    ({"budgets": (1e3, 3e8)}, r"budget C=1e\+03 gives its smallest size d16-L1 only 0 steps .* raise that budget"),
    ({"min_tokens_per_param": 1e4}, r"budget\(s\) \['4e\+08', '8e\+08'\] have no feasible point"),
    ({"wsd": WSDConfig(trunk_steps=30)}, r"branches at step 40, past the trunk's end \(wsd.trunk_steps=30\)"),
    ({"wsd": WSDConfig(cooldown_frac=0.9), "train.optim.warmup_steps": 10}, "inside the warmup"),
    ({"transfer": TransferConfig(learning_rates=(1e-3, 0.0))}, "learning-rate grid needs positive values"),
    ({"transfer": TransferConfig(learning_rates=(1e-3, -1e-2))}, "learning-rate grid needs positive values"),
    ({"transfer": TransferConfig(mup_learning_rates=(0.1, 0.0))}, r"mup_learning_rates=\(0.1, 0.0\): the learning-rate grid"),
    ({"transfer": TransferConfig(base_width=12), "sizes.head_dim": 4, "train.model.parametrization": "mup",
      "train.model.mup_base_width": 8}, r"mup_base_width=8 does not divide the width\(s\) d_model=\[12\]"),
    ({"train.model.parametrization": "mup", "train.model.mup_base_width": 16}, r"mup_base_width=16 does not divide"),
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


def test_budgets_in_real_compute_count_attention(tiny):
    """Under '6n_attn_causal' tokens come from FLOPs that include the causal attention scores, so a
    budget buys fewer tokens than under '6n', and more so for the small (attention-heavy) models."""
    plans = {conv: make_plan(configs.replace(tiny(), convention=conv)) for conv in ("6n", "6n_attn_causal")}
    for spec in plans["6n_attn_causal"].runs:
        model = spec.model(plans["6n_attn_causal"].config)
        fpt = flops_lib.flops_per_token(model, 32, "6n_attn_causal")
        assert spec.flops_per_token == fpt and fpt > flops_lib.flops_per_token(model, 32, "6n")
        assert abs(spec.steps - spec.budget / fpt / (8 * 32)) <= 0.5
        twin = plans["6n"].by_id()[spec.run_id]
        assert spec.steps < twin.steps
    ratio = {r.shape.name: plans["6n"].by_id()[r.run_id].steps / r.steps for r in plans["6n_attn_causal"].runs}
    small, large = min(ratio, key=lambda n: int(n[1:].split("-")[0])), max(ratio, key=lambda n: int(n[1:].split("-")[0]))
    assert ratio[small] >= ratio[large]


def test_default_sweep_plans_in_real_compute_with_mup():
    cfg = configs.load("default")
    assert cfg.convention == "6n_attn_causal" and cfg.train.model.parametrization == "mup"
    for spec in make_plan(cfg).runs:
        tc = spec.train_config(cfg, cfg.directory).validate()
        assert tc.model.parametrization == "mup" and tc.model.d_model % tc.model.mup_base_width == 0


def test_transfer_plan_is_widths_by_rates_by_parametrizations():
    cfg = configs.load("mup_transfer")
    plan = make_plan(cfg)
    t = cfg.transfer
    assert len(plan.runs) == len(t.width_mults) * sum(len(t.grid(p)) for p in t.parametrizations) == 40
    assert t.grid("mup") != t.grid("standard")
    seen = set()
    for spec in plan.runs:
        tc = spec.train_config(cfg, cfg.directory).validate()
        assert spec.kind == "lr_transfer" and tc.steps == t.steps and tc.optim.schedule == "cosine"
        assert tc.model.n_layers == t.n_layers and tc.model.d_model // t.base_width in t.width_mults
        assert tc.optim.learning_rate == spec.learning_rate and tc.model.parametrization == spec.parametrization
        seen.add((tc.model.d_model, tc.optim.learning_rate, tc.model.parametrization))
        assert spec.learning_rate in t.grid(spec.parametrization)
    assert len(seen) == 40
    assert "lr_transfer" in format_plan(plan) and "mup" in format_plan(plan)


def test_wsd_trunk_can_run_past_its_last_branch(tiny):
    plan = make_plan(tiny(wsd=WSDConfig(cooldown_frac=0.25, trunk_steps=200)))
    trunks = [r for r in plan.runs if r.kind == "wsd_constant"]
    assert trunks and all(t.steps == 200 and max(t.checkpoint_steps) < 200 for t in trunks)


def test_the_probe_times_shapes_of_the_plan_and_the_estimate_covers_every_run(tiny):
    """`lm-sweep plan`'s probe trains a short real run of a shape the way the sweep trains it (a WSD
    sweep's cooldowns too: the probe starts fresh), and the estimate extends it to every run."""
    from experiments.plan_table import estimate_seconds, format_plan, makespan, probe
    plan = make_plan(tiny(budgets=(4e8,), targets=(5e3,), wsd=WSDConfig()))
    shapes = sorted({r.shape for r in plan.runs}, key=lambda s: s.d_model)
    probed = probe(plan, shapes[:1], steps=20)
    assert set(probed) == {shapes[0].name} and probed[shapes[0].name]["step_s"] > 0
    seconds = estimate_seconds(plan, probed)
    assert set(seconds) == {r.run_id for r in plan.runs} and min(seconds.values()) > 0
    assert makespan(seconds.values(), 1) == pytest.approx(sum(seconds.values()))
    assert "est. s" in format_plan(plan, seconds)


def test_probe_shapes_picks_the_middle_size_by_default_and_the_ends_for_more(tiny):
    """`lm-sweep plan --probe K`: 1 times the middle size (the default: one shape's compilations),
    2 the smallest and largest, 3 or more those and the middle one; 0 none."""
    from experiments.plan_table import probe_shapes
    plan = make_plan(tiny(budgets=(4e8,), targets=(1.2e3, 5e3, 9e3, 1.2e4)))
    shapes = sorted({r.shape for r in plan.runs}, key=lambda s: min(r.params for r in plan.runs if r.shape == s))
    assert len(shapes) >= 3
    n = len(shapes)
    assert probe_shapes(plan, 1) == [shapes[n // 2]]
    assert probe_shapes(plan, 2) == [shapes[0], shapes[-1]]
    assert probe_shapes(plan, 3) == probe_shapes(plan, 5) == [shapes[0], shapes[n // 2], shapes[-1]]
    assert probe_shapes(plan, 0) == []
