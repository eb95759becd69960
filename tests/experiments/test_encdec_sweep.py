"""Encoder-decoder sweeps: plans that carry the encoder's depth, the Ghorbani report from a results
table, bad configs refused, and (slow) a tiny real sweep end to end on the translation task."""

import dataclasses
import os

import numpy as np
import pytest

from experiments import results as results_lib
from experiments import runner, sweep
from experiments.configs import load, replace
from experiments.encdec import encdec_table, side_sizes
from experiments.plan import make_plan
from experiments.sweep_sections import EncDecConfig
from lm import flops as flops_lib
from lm.config import DataConfig
from lm.config_fields import to_dict
from lm.scaling.ghorbani import GhorbaniLaw

TRANSLATION = DataConfig(source="translation", synthetic_vocab=16, translation_noise=0.2)


def _encdec(tiny, **kw):
    base = tiny()
    model = dataclasses.replace(base.train.model, vocab_size=16, n_encoder_layers=1, positions="learned")
    data = dataclasses.replace(TRANSLATION, seq_len=8)
    return replace(base, **{"train.model": model, "train.data": data}, min_steps=10,
                   encdec=EncDecConfig(**{"encoder_layers": (1, 2), "decoder_layers": (1, 2, 3), "widths": (16,),
                                          "steps": 20, **kw}))


def test_encdec_plan_varies_encoder_and_decoder_depth_and_counts_both():
    cfg = load("encdec")
    plan = make_plan(cfg)
    assert len(plan.runs) == 9 and len({r.run_id for r in plan.runs}) == 9
    sizes = set()
    for spec in plan.runs:
        model = spec.train_config(cfg, "/tmp/x").model
        assert model.n_encoder_layers == spec.shape.n_encoder_layers and model.n_layers == spec.shape.n_layers
        assert spec.run_id == f"ed-d{model.d_model}-E{model.n_encoder_layers}-L{model.n_layers}"
        assert spec.params == flops_lib.param_counts(model).total
        sizes.add(side_sizes(to_dict(model)))
    n_e, n_d = zip(*sizes)
    assert len(set(n_e)) == 3 and len(set(n_d)) == 3                 # each side takes three sizes


def test_isoflop_plan_on_translation_keeps_the_templates_encoder(tiny):
    cfg = replace(_encdec(tiny), encdec=None, budgets=(4e7,), **{"sizes.targets": (3e3,)})
    spec = make_plan(cfg).runs[0]
    model = spec.model(cfg)
    assert model.n_encoder_layers == 1 and spec.shape.name == f"d{model.d_model}-L{model.n_layers}"
    assert spec.params_nonembed == flops_lib.param_counts(model).non_embedding > flops_lib.param_counts(
        dataclasses.replace(model, n_encoder_layers=0)).non_embedding


@pytest.mark.parametrize("change, match", [
    ({"train.data": DataConfig(seq_len=8)}, "paired data"),
    (dict(encdec=EncDecConfig(encoder_layers=(1,), decoder_layers=(1, 2))), "fewer than 5"),
    (dict(encdec=EncDecConfig(widths=(12,))), "multiples of sizes.head_dim"),
    (dict(encdec=EncDecConfig(encoder_layers=(0, 1, 2))), "encdec.encoder_layers"),
])
def test_bad_encdec_sweeps_are_refused(tiny, change, match):
    with pytest.raises(ValueError, match=match):
        replace(_encdec(tiny), **change).validate()


def test_encdec_report_fits_the_law_from_the_results_table(tiny, capsys):
    cfg = replace(_encdec(tiny), encdec=EncDecConfig(encoder_layers=(1, 2, 4), decoder_layers=(1, 2, 4),
                                                     widths=(16,), steps=20))
    plan = make_plan(cfg)
    results_lib.check_sweep_dir(cfg)
    results_lib.record_sweep(cfg, plan)
    true = GhorbaniLaw(beta=0.5, p_e=0.3, p_d=0.6, L_inf=1.1, N_e_ref=5e3, N_d_ref=5e3)
    for spec in plan.runs:
        config = to_dict(spec.train_config(cfg, cfg.directory))
        n_e, n_d = side_sizes(config["model"])
        results_lib.append_row(cfg.directory, {
            "run_id": spec.run_id, "kind": spec.kind, "status": "completed", "loss": float(true.loss(n_e, n_d)),
            "shape": spec.shape.name, "budget": None, "entropy_floor": 1.0, "config": config})
    out = sweep.report(cfg.directory, n_bootstrap=20)
    text = capsys.readouterr().out
    assert "Ghorbani et al. L(N_e, N_d) over 9 runs" in text and "exponents identified" in text
    assert out["law"]["p_e"] == pytest.approx(0.3, rel=1e-3) and out["law"]["p_d"] == pytest.approx(0.6, rel=1e-3)
    assert out["identified"] and os.path.getsize(os.path.join(cfg.directory, "plots", "encdec.png")) > 10_000


@pytest.mark.slow
def test_tiny_encdec_sweep_trains_every_shape_and_reports(tiny, capsys):
    cfg = _encdec(tiny)
    outcome = runner.run_sweep(cfg)
    assert not outcome.failed and len(outcome.trained) == 6
    table = encdec_table(results_lib.load_results(cfg.directory))
    assert len(table) == 6 and set(table["n_encoder_layers"]) == {1, 2} and set(table["n_layers"]) == {1, 2, 3}
    assert np.all(np.isfinite(table["loss"])) and table["N_e"].nunique() == 2 and table["N_d"].nunique() == 3
    out = sweep.report(cfg.directory, n_bootstrap=10)
    text = capsys.readouterr().out
    assert "Ghorbani et al. L(N_e, N_d) over 6 runs" in text and "the task's floor" in text
    assert set(out["estimates"]) == {"beta", "p_e", "p_d", "L_inf"}
    assert os.path.exists(os.path.join(cfg.directory, "plots", "encdec.png"))
