"""JAX's persistent compilation cache, set up in one place, with entries that survive a kill.

Sweeps share one cache across runs, workers, invocations and sweeps (experiments.sweep_sections
ExecConfig.compile_cache), `lm-train --compile-cache` and `lm-fit --compile-cache` use one too.

JAX (0.10) writes a cache entry in place (`LRUCache.put`: `path.write_bytes(value)`). A process
killed during that write leaves a torn entry, and JAX never rewrites an entry that exists: every
later process that needs the program fails to read it, warns ("Error reading persistent
compilation cache entry ...: incomplete or truncated stream") and compiles again, for as long as
the entry stays (measured: a truncated entry, three processes, the same warning and recompilation
each time; results correct). `configure` therefore makes the cache's local writes atomic: the
value goes to a temporary file in the same folder, then `os.replace` puts it under the entry's
name, so an entry either does not exist or is whole. JAX puts an entry only after a miss, so an entry
that exists when put is called is one JAX could not read (damaged by something else): it is
replaced, once, instead of being kept and failing every later process.
"""

from __future__ import annotations

import os

_TMP_SUFFIX = ".lm-tmp"


def user_dir(environ=None) -> str:
    """The per-user cache folder: $LM_COMPILE_CACHE, else $XDG_CACHE_HOME/lm/xla, else
    ~/.cache/lm/xla (the folder a sweep's exec.compile_cache='user' names)."""
    environ = os.environ if environ is None else environ
    if environ.get("LM_COMPILE_CACHE"):
        return os.path.abspath(os.path.expanduser(environ["LM_COMPILE_CACHE"]))
    base = environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "lm", "xla")


def configure(folder: str | None, min_compile_s: float = 0.0) -> None:
    """Cache every compilation taking at least `min_compile_s` in `folder` (None or '': leave the
    cache as it is), with atomic writes. XLA's own GPU kernel/autotune caches are left off: JAX
    puts their paths (inside the cache folder) into the compile options, which would make every
    key depend on where the folder is."""
    if not folder:
        return
    import jax

    check(folder)
    os.makedirs(folder, exist_ok=True)
    atomic_writes()
    jax.config.update("jax_compilation_cache_dir", folder)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", min_compile_s)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    jax.config.update("jax_persistent_cache_enable_xla_caches", "none")


def check(folder: str | None) -> None:
    """A ValueError (one line, with the fix) when `folder` cannot be a cache folder."""
    if not folder:
        return
    probe = os.path.abspath(folder)
    while not os.path.isdir(probe):
        if os.path.exists(probe):
            raise ValueError(f"the compilation cache {folder} is a file, not a folder ({probe} is a file); "
                             "point LM_COMPILE_CACHE (or --compile-cache, or exec.compile_cache) at a folder")
        probe = os.path.dirname(probe)
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ValueError(f"the compilation cache {folder} cannot be written ({probe} is not writable); point "
                         "LM_COMPILE_CACHE (or --compile-cache, or exec.compile_cache) at a folder you can write")


def atomic_writes() -> bool:
    """Make JAX's local, unbounded cache write each entry atomically (temporary file + rename);
    True when installed. False when this JAX has no `jax._src.lru_cache.LRUCache.put` to wrap
    (then entries are written as JAX writes them; tests/test_compile_cache.py fails on it)."""
    try:
        from jax._src import lru_cache
    except ImportError:
        return False
    cls = getattr(lru_cache, "LRUCache", None)
    suffix = getattr(lru_cache, "_CACHE_SUFFIX", None)
    if cls is None or suffix is None or not hasattr(cls, "put"):
        return False
    if getattr(cls.put, "atomic", False):
        return True
    jax_put = cls.put

    def put(self, key: str, value: bytes) -> None:
        if not key:
            raise ValueError("key cannot be empty")
        if getattr(self, "eviction_enabled", True) or not lru_cache._is_local_filesystem(str(self.path)):
            return jax_put(self, key, value)      # bounded or remote caches: as JAX does it
        path = os.path.join(str(self.path), f"{key}{suffix}")
        tmp = f"{path}.{os.getpid()}{_TMP_SUFFIX}"
        with open(tmp, "wb") as f:
            f.write(value)
        os.replace(tmp, path)

    put.atomic = True
    cls.put = put
    return True
