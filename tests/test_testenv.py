"""tools/testenv.py: what `make test` and `make bench` require of the machine, and what a missing program does."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def testenv(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """tools/testenv.py, loaded from its file, on a machine where we are not root and nothing is installed."""
    spec = importlib.util.spec_from_file_location("testenv_under_test", ROOT / "tools" / "testenv.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.delenv("CI", raising=False)
    return module


def installed(testenv: ModuleType, monkeypatch: pytest.MonkeyPatch, *programs: str) -> None:
    monkeypatch.setattr(testenv, "find_program",
                        lambda dep: f"/usr/bin/{dep.program}" if dep.program in programs else None)


def test_make_test_does_not_need_redis(testenv: ModuleType, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    installed(testenv, monkeypatch, "etcd")
    monkeypatch.setenv("CI", "true")
    assert testenv.main([]) == 0
    assert capsys.readouterr().err == ""


def test_make_bench_refuses_without_redis_even_outside_ci(testenv: ModuleType, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    installed(testenv, monkeypatch, "etcd")
    assert testenv.main(["--bench"]) == 1
    err = capsys.readouterr().err
    assert "redis-server, redis-cli, redis-benchmark not found" in err
    assert "apt-get install -y redis-server redis-tools" in err


def test_make_bench_with_everything_installed(testenv: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    installed(testenv, monkeypatch, "etcd", "redis-server", "redis-cli", "redis-benchmark")
    assert testenv.main(["--bench"]) == 0


@pytest.mark.parametrize(("ci", "code"), [("true", 1), ("", 0)])
def test_a_missing_test_dependency_fails_in_ci_and_warns_elsewhere(testenv: ModuleType,
                                                                   monkeypatch: pytest.MonkeyPatch,
                                                                   capsys: pytest.CaptureFixture[str],
                                                                   ci: str, code: int) -> None:
    installed(testenv, monkeypatch)
    monkeypatch.setenv("CI", ci)
    assert testenv.main([]) == code
    assert "apt-get install -y etcd-server" in capsys.readouterr().err
