"""Suite-wide test settings: hypothesis profiles, seeds, the async backend.

Profiles: `dev` (default, quick) and `ci` (more examples), chosen with
HYPOTHESIS_PROFILE or automatically when CI=true. They alone set how many
examples a property runs: no test overrides `max_examples`. Hypothesis prints
the failing example (and its seed when it matters); tests that draw from
`random` themselves take the `random_seed` fixture, which prints the seed and
reads PITR_TEST_SEED to replay it (tests/helpers/seeds.py).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import pytest
from hypothesis import HealthCheck, settings

from tests.helpers.seeds import chosen_seed, rerun_hint

settings.register_profile("dev", max_examples=50, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("ci", max_examples=100, deadline=None, derandomize=False, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])


def profile_name(environ: Mapping[str, str]) -> str:
    """HYPOTHESIS_PROFILE if set, else `ci` under CI=true, else `dev`."""
    return environ.get("HYPOTHESIS_PROFILE") or ("ci" if environ.get("CI") == "true" else "dev")


settings.load_profile(profile_name(os.environ))


@pytest.fixture
def anyio_backend() -> str:
    return "trio"


@pytest.fixture
def random_seed(request: pytest.FixtureRequest) -> int:
    """A seed for the test's own `random.Random`: printed, kept for the failure report, and taken
    from PITR_TEST_SEED when set so a failing run can be replayed."""
    seed = chosen_seed()
    print(f"{request.node.nodeid}: {rerun_hint(seed)}")
    request.node.user_properties.append(("random_seed", seed))
    return seed


_skipped_integration: list[str] = []


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for name, value in item.user_properties:
            if name == "random_seed" and isinstance(value, int):
                report.sections.append(("random seed", rerun_hint(value)))
    if report.skipped and item.get_closest_marker("integration") is not None:
        _skipped_integration.append(item.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """In CI a skipped integration test is a failure: the servers must be there."""
    if os.environ.get("CI") == "true" and _skipped_integration:
        print("\nCI=true and these integration tests were skipped (a server is missing):")
        for nodeid in _skipped_integration:
            print(f"  {nodeid}")
        session.exitstatus = 1
