"""Suite-wide test settings: hypothesis profiles and the async backend.

Profiles: `dev` (default, quick) and `ci` (more examples, no deadline),
chosen with HYPOTHESIS_PROFILE or automatically when CI=true.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile("dev", max_examples=50, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("ci", max_examples=100, deadline=None, derandomize=False,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") == "true" else "dev"))


@pytest.fixture
def anyio_backend() -> str:
    return "trio"


_skipped_integration: list[str] = []


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    outcome = yield
    report = outcome.get_result()
    if report.skipped and item.get_closest_marker("integration") is not None:
        _skipped_integration.append(item.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """In CI a skipped integration test is a failure: the servers must be there."""
    if os.environ.get("CI") == "true" and _skipped_integration:
        print("\nCI=true and these integration tests were skipped (a server is missing):")
        for nodeid in _skipped_integration:
            print(f"  {nodeid}")
        session.exitstatus = 1
