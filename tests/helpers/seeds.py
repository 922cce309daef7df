"""Seeds for tests that draw from `random` outside hypothesis: printed, and fixed by PITR_TEST_SEED.

A test takes the `random_seed` fixture (tests/conftest.py), which prints the seed
and names it in the failure report; `PITR_TEST_SEED=<seed> pytest <test>` replays
a failing run.
"""

from __future__ import annotations

import os
import random

SEED_ENV = "PITR_TEST_SEED"


def chosen_seed() -> int:
    """PITR_TEST_SEED if set, else a fresh random seed."""
    raw = os.environ.get(SEED_ENV, "").strip()
    if raw:
        try:
            return int(raw, 0)
        except ValueError:
            raise ValueError(f"{SEED_ENV}={raw!r} is not an integer seed") from None
    return random.SystemRandom().randrange(1 << 32)


def rerun_hint(seed: int) -> str:
    return f"random seed {seed}; rerun with {SEED_ENV}={seed}"
