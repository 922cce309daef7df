"""The `random_seed` fixture (tests/conftest.py): a failing run names its seed, and PITR_TEST_SEED replays it."""

from __future__ import annotations

import random

import pytest

from tests.helpers.seeds import SEED_ENV, chosen_seed

pytest_plugins = ["pytester"]

FAILING = """
import random

def test_draws(random_seed):
    print("drew", random.Random(random_seed).randrange(1 << 30))
    assert False
"""


def test_the_seed_comes_from_the_environment_when_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SEED_ENV, "1234")
    assert chosen_seed() == 1234
    monkeypatch.setenv(SEED_ENV, "not a number")
    with pytest.raises(ValueError, match=SEED_ENV):
        chosen_seed()
    monkeypatch.delenv(SEED_ENV)
    assert len({chosen_seed() for _ in range(8)}) > 1, "without it each run draws its own seed"


def test_a_failing_test_names_its_seed_and_the_seed_replays_it(pytester: pytest.Pytester,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    pytester.makeconftest('pytest_plugins = ["tests.conftest"]\n')
    pytester.makepyfile(FAILING)
    monkeypatch.delenv(SEED_ENV, raising=False)
    first = pytester.runpytest("-p", "no:cacheprovider")
    first.assert_outcomes(failed=1)
    out = first.stdout.str()
    hints = [line for line in out.splitlines() if f"rerun with {SEED_ENV}=" in line]
    assert hints, f"the failure report names no seed:\n{out}"
    seed = int(hints[-1].rsplit("=", 1)[1])
    drew = random.Random(seed).randrange(1 << 30)
    assert f"drew {drew}" in out
    monkeypatch.setenv(SEED_ENV, str(seed))
    again = pytester.runpytest("-p", "no:cacheprovider")
    again.assert_outcomes(failed=1)
    assert f"drew {drew}" in again.stdout.str(), "the printed seed did not replay the run"
