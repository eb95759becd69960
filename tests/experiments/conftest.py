import pytest

from tiny_sweeps import tiny_config


@pytest.fixture
def tiny(tmp_path):
    return lambda **kw: tiny_config(tmp_path, **kw)


@pytest.fixture(scope="session")
def _cache_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("jax_cache"))


@pytest.fixture(scope="module", autouse=True)
def compile_once(_cache_dir):
    """In-process (inline) runs of one shape compile once per test session, through the persistent
    compilation cache a sweep uses; switched off again after each module of this folder."""
    import jax
    from jax.experimental.compilation_cache import compilation_cache

    names = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs",
             "jax_persistent_cache_min_entry_size_bytes", "jax_persistent_cache_enable_xla_caches")
    saved = {name: jax.config.values[name] for name in names}
    for name, value in zip(names, (_cache_dir, 0.0, 0, "none")):
        jax.config.update(name, value)
    compilation_cache.reset_cache()
    yield
    for name, value in saved.items():
        jax.config.update(name, value)
    compilation_cache.reset_cache()
