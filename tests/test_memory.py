"""A run (or a sweep) whose memory estimate exceeds the available memory is refused before anything
is compiled or written, unless it allows swap (issue 25 item 2). The available memory is set by
hand here (the host's real figure varies); the estimate is lm.memory's own."""

import dataclasses

import pytest

from lm import memory
from lm.train import train
from test_checkpoint_integrity import tiny


def _available_is(monkeypatch, nbytes):
    monkeypatch.setattr(memory, "_available", lambda devices: (float(nbytes), len(devices),
                                                               "this host's available RAM"))


def test_a_run_above_the_available_memory_is_refused_unless_it_allows_swap(tmp_path, monkeypatch, n_devices):
    cfg = tiny(tmp_path / "run")
    need = memory.estimate(cfg, n_devices).needed
    _available_is(monkeypatch, need / 1.5)                    # 1.5x over: let through before (2x slack)
    with pytest.raises(ValueError, match=r"cannot fit in memory: .* allow_swap=true"):
        train(cfg)
    assert not (tmp_path / "run").exists()
    assert memory.check_fits(dataclasses.replace(cfg, allow_swap=True), n_devices).needed == need
    _available_is(monkeypatch, need * 1.01)
    assert memory.check_fits(cfg, n_devices).fits()
