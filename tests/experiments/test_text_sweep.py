"""The real-text sweep plans what its docstring promises (planning only: nothing trains)."""

import dataclasses

from experiments import configs
from experiments.adaptive import first_stage_plan

TEXT_STAGE1_OPTIMUM = 4e4
"""Parameters at the parabola minimum of the text sweep's smallest budget (3e10 FLOPs): 3.9e4 with
sizes d8-d40, 4.6e4 (vertex outside the sizes) with d8-d24 (BENCHMARKS.md, helper "text")."""


def test_text_sweep_spans_100x_in_at_least_5_budgets_on_the_pinned_corpus():
    cfg = configs.load("text")
    assert len(cfg.budgets) >= 5 and max(cfg.budgets) / min(cfg.budgets) >= 100
    assert cfg.train.data.source.startswith("corpus:") and cfg.train.data.tokenizer_type == "bpe"


def _first_budget_sizes(cfg) -> list[float]:
    plan = first_stage_plan(cfg)
    smallest = min(cfg.budgets)
    return sorted(float(r.params) for r in plan.runs if r.budget == smallest)


def test_the_first_text_budget_brackets_its_optimum_and_the_old_prior_did_not():
    cfg = configs.load("text")
    sizes = _first_budget_sizes(cfg)
    assert len(sizes) == cfg.sizes.per_budget
    assert sizes[0] < TEXT_STAGE1_OPTIMUM / 2 and sizes[-1] > TEXT_STAGE1_OPTIMUM * 2
    # the prior of 20 tokens per parameter with 200 steps at least: 3 feasible sizes, none above 4.4e4
    old = dataclasses.replace(cfg, min_steps=200, sizes=dataclasses.replace(cfg.sizes, tokens_per_param_guess=20.0))
    old_sizes = _first_budget_sizes(old)
    assert len(old_sizes) == 3 and old_sizes[-1] < TEXT_STAGE1_OPTIMUM * 1.1
