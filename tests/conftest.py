"""Test set-up: 8 simulated CPU devices, set before anything imports jax."""

import os

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import pytest  # noqa: E402
from hypothesis import settings  # noqa: E402

# Property tests draw the same examples on every run (CI included): a failure they find is
# reproduced by the same command, and a run's verdict never depends on luck. Each test's own
# @settings inherit this.
settings.register_profile("lm", derandomize=True, database=None)
settings.load_profile("lm")


@pytest.fixture(scope="session", autouse=True)
def _private_compile_cache(tmp_path_factory):
    """Sweeps default to the user's compilation cache (ExecConfig.compile_cache='user'): the tests'
    sweeps and their worker processes share one of their own instead, never the user's."""
    saved = os.environ.get("LM_COMPILE_CACHE")
    os.environ["LM_COMPILE_CACHE"] = str(tmp_path_factory.mktemp("user_xla_cache"))
    yield
    if saved is None:
        os.environ.pop("LM_COMPILE_CACHE", None)
    else:
        os.environ["LM_COMPILE_CACHE"] = saved


@pytest.fixture(scope="session")
def n_devices() -> int:
    import jax

    return jax.device_count()


REQUIRE_SHARED_DATA = os.environ.get("LM_REQUIRE_SHARED_DATA", "") not in ("", "0")
"""Set by .ci/run: there ../shared/data is always present, so a test that would skip for want of it
fails instead (a renamed or missing file must not turn into a silent skip)."""


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if REQUIRE_SHARED_DATA and report.skipped and "shared/data" in str(report.longrepr):
        report.outcome = "failed"
        report.longrepr = (f"LM_REQUIRE_SHARED_DATA is set but the test skipped: {report.longrepr}; "
                           "put the public data at ../shared/data (see its SOURCES.md)")
