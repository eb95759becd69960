"""Where a sweep's compiled programs persist (ExecConfig.compile_cache), and that a second sweep
meeting the same shapes loads them from there instead of compiling."""

import dataclasses
import os

import pytest

from experiments import sweep_sections
from experiments.worker import compile_cache_dir


def test_cache_folder_of_each_setting(tmp_path):
    sweep = str(tmp_path / "sweep")
    assert compile_cache_dir("sweep", sweep, {}) == os.path.join(sweep, ".jax_cache")
    assert compile_cache_dir("none", sweep, {}) is None
    assert compile_cache_dir(str(tmp_path / "c"), sweep, {}) == str(tmp_path / "c")
    assert compile_cache_dir("user", sweep, {"LM_COMPILE_CACHE": str(tmp_path / "u")}) == str(tmp_path / "u")
    assert compile_cache_dir("user", sweep, {"XDG_CACHE_HOME": str(tmp_path / "x")}) == str(tmp_path / "x" / "lm" / "xla")
    assert compile_cache_dir("user", sweep, {}) == os.path.join(os.path.expanduser("~"), ".cache", "lm", "xla")


def test_a_bad_cache_setting_is_refused(tmp_path):
    a_file = tmp_path / "f"
    a_file.write_text("")
    for bad in ("", str(a_file)):
        with pytest.raises(ValueError, match="compile_cache"):
            sweep_sections.ExecConfig(compile_cache=bad).validate()


@pytest.mark.slow
def test_a_second_sweep_loads_the_shapes_the_first_compiled(tmp_path):
    """Two sweeps in different folders sharing one cache folder: the second writes no new entry
    (every program it needs has the key of one the first compiled: nothing of the sweep's folder
    or name reaches a program or its compile options), and neither writes a cache of its own."""
    from experiments import runner
    from tiny_sweeps import tiny_config

    cache = tmp_path / "cache"
    entries = []
    for name in ("first", "second"):
        cfg = tiny_config(tmp_path, budgets=(4e8,), targets=(5e3, 9e3), backend="pool", workers=1, out=name)
        cfg = dataclasses.replace(cfg, exec=dataclasses.replace(cfg.exec, compile_cache=str(cache)))
        outcome = runner.run_sweep(cfg, runner.prepare(cfg))
        assert not outcome.failed and outcome.trained
        assert not os.path.exists(os.path.join(cfg.directory, ".jax_cache"))
        entries.append(sorted(os.listdir(cache)))
    assert entries[0] and entries[1] == entries[0]
