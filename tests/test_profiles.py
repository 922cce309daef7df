"""The hypothesis profiles in tests/conftest.py decide how many examples every property runs."""

from __future__ import annotations

import ast
import os
from pathlib import Path

from hypothesis import settings

from tests.conftest import profile_name

TESTS = Path(__file__).parent
PROFILE_ONLY = {"max_examples"}  # a test that sets these overrides the profile the run asked for


def test_ci_true_selects_the_ci_profile_and_hypothesis_profile_wins() -> None:
    assert profile_name({}) == "dev"
    assert profile_name({"CI": "true"}) == "ci"
    assert profile_name({"CI": "true", "HYPOTHESIS_PROFILE": "dev"}) == "dev"
    assert settings.get_profile("ci").max_examples > settings.get_profile("dev").max_examples
    assert settings.get_profile("ci").print_blob, "a CI failure prints the blob that replays it"
    assert settings().max_examples == settings.get_profile(profile_name(os.environ)).max_examples


def test_no_test_overrides_the_profiles_example_count() -> None:
    found = []
    for path in sorted(TESTS.rglob("*.py")):
        if path == TESTS / "conftest.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Call):
                name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
                overridden = {k.arg for k in node.keywords if k.arg is not None} & PROFILE_ONLY
                if name in ("settings", "register_profile") and overridden:
                    found.append(f"{path.relative_to(TESTS.parent)}:{node.lineno}: {', '.join(sorted(overridden))}")
    assert not found, "tests override the profile (tests/conftest.py decides):\n" + "\n".join(found)
