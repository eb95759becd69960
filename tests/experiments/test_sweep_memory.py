"""A sweep whose runs cannot fit the memory they share is refused before any worker starts (issue 25
item 2); the available memory is set by hand, the estimate is lm.memory's own."""

import pytest

from lm import memory


def _available_is(monkeypatch, nbytes):
    monkeypatch.setattr(memory, "_available", lambda devices: (float(nbytes), len(devices),
                                                               "this host's available RAM"))


def test_a_sweep_is_checked_before_its_workers_start(tmp_path, monkeypatch):
    """Two pool workers train at once and share the host's RAM: a sweep whose largest run fits
    alone but not twice over is refused by prepare(), before any folder or worker exists."""
    import jax

    from experiments import configs as configs_lib
    from experiments.plan import make_plan
    from experiments.runner import prepare
    from tiny_sweeps import tiny_config
    cfg = tiny_config(tmp_path, backend="pool", workers=2)
    plan = make_plan(cfg)
    largest = max(plan.runs, key=lambda r: r.params).train_config(cfg, cfg.directory)
    one = memory.estimate(largest, 1, jax.local_devices()[:1]).needed
    _available_is(monkeypatch, 1.5 * one)
    with pytest.raises(ValueError, match=r"run .*cannot fit in memory.*2 runs at once.*exec.allow_swap=true"):
        prepare(cfg)
    assert not (tmp_path / "sweep").exists()
    assert prepare(configs_lib.replace(cfg, **{"exec.allow_swap": True})).runs
    assert prepare(configs_lib.replace(cfg, **{"exec.workers": 1})).runs
