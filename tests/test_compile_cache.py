"""lm.compile_cache: JAX's persistent compilation cache with entries written whole (a process
killed while writing one leaves no entry, never a torn one that every later process fails on)."""

import os
import subprocess
import sys

import pytest

from lm import compile_cache

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_entries_are_written_whole_or_not_at_all(tmp_path, monkeypatch):
    from jax._src import lru_cache

    assert compile_cache.atomic_writes(), "this JAX's cache class changed: lm.compile_cache no longer applies"
    cache = lru_cache.LRUCache(str(tmp_path), max_size=-1)
    cache.put("first", b"x" * 10_000)
    assert cache.get("first") == b"x" * 10_000 and os.listdir(tmp_path) == ["first-cache"]

    def killed_before_rename(src, dst):       # the process dies after writing, before renaming
        raise SystemExit("killed")

    monkeypatch.setattr(os, "replace", killed_before_rename)
    with pytest.raises(SystemExit):
        cache.put("second", b"y" * 10_000)
    monkeypatch.undo()
    assert cache.get("second") is None        # no entry: the next process compiles and writes it
    cache.put("second", b"y" * 10_000)
    assert cache.get("second") == b"y" * 10_000
    cache.put("first", b"other")              # JAX puts only after a miss: an entry it could not read
    assert cache.get("first") == b"other"     # (damaged) is replaced, whole


def test_a_configured_cache_serves_a_second_process(tmp_path):
    """configure(): a jitted program compiled in one process is written whole (no temporary file
    left) and a second process reads it back without a cache warning."""
    script = ("import warnings, jax, jax.numpy as jnp\n"
              "from lm import compile_cache\n"
              f"compile_cache.configure({str(tmp_path)!r})\n"
              "with warnings.catch_warnings(record=True) as w:\n"
              "    warnings.simplefilter('always')\n"
              "    print(float(jax.jit(lambda x: jnp.sin(x).sum())(jnp.ones(64))))\n"
              "assert not [m for m in w if 'cache' in str(m.message)], [str(m.message) for m in w]\n")
    env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS="cpu")
    outputs = [subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
               for _ in range(2)]
    for out in outputs:
        assert out.returncode == 0, out.stderr[-2000:]
    assert outputs[0].stdout == outputs[1].stdout
    names = os.listdir(tmp_path)
    assert any(n.endswith("-cache") for n in names) and not any(n.endswith(".lm-tmp") for n in names)


def test_a_damaged_entry_is_replaced_once(tmp_path):
    """An entry damaged on disk (truncated by something other than JAX) warns and recompiles once;
    the recompiled program replaces it, so the run after that reads it without a warning."""
    script = ("import warnings, jax, jax.numpy as jnp\n"
              "from lm import compile_cache\n"
              f"compile_cache.configure({str(tmp_path)!r})\n"
              "with warnings.catch_warnings(record=True) as w:\n"
              "    warnings.simplefilter('always')\n"
              "    print(float(jax.jit(lambda x: jnp.cos(x).sum())(jnp.ones(64))))\n"
              "print('WARNED' if [m for m in w if 'cache' in str(m.message)] else 'CLEAN')\n")
    env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS="cpu")

    def run():
        out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr[-2000:]
        return out.stdout.split()

    value, first = run()
    entries = [os.path.join(tmp_path, n) for n in os.listdir(tmp_path) if n.endswith("-cache")]
    for entry in entries:
        os.truncate(entry, os.path.getsize(entry) // 2)
    assert run() == [value, "WARNED"]
    assert run() == [value, "CLEAN"] and first == "CLEAN"


def test_a_cache_folder_that_is_a_file_is_one_line(tmp_path):
    path = tmp_path / "cache"
    path.write_text("")
    with pytest.raises(ValueError, match=f"{path} is a file, not a folder.*LM_COMPILE_CACHE"):
        compile_cache.configure(str(path))
