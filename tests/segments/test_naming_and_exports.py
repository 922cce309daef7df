"""File names that sort by position, and the package's public surface."""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import segments
from segments import parse_segment_name, parse_snapshot_name, segment_name, snapshot_name

lsns = st.integers(0, (1 << 63) - 1)
times = st.integers(0, (1 << 63) - 1)


@given(first=lsns, extra=st.integers(0, 1 << 20))
def test_segment_names_round_trip_and_sort(first: int, extra: int) -> None:
    last = min(first + extra, (1 << 63) - 1)
    name = segment_name(first, last)
    assert parse_segment_name(name) == (first, last)
    assert segment_name(first, last) < segment_name(first + 1, last + 1)


@given(lsn=lsns, ts=times)
def test_snapshot_names_round_trip(lsn: int, ts: int) -> None:
    name = snapshot_name(lsn, ts)
    assert parse_snapshot_name(name) == lsn
    assert name.endswith(f"{ts % 1_000_000_000:09d}Z.snap")


def test_snapshot_name_shows_utc_time() -> None:
    assert snapshot_name(42, 1_795_961_387_250_000_000) == "00000000000000000042-20261129T140947250000000Z.snap"


@pytest.mark.parametrize("name", [
    "1-2.seg", "00000000000000000002-00000000000000000001.seg", "00000000000000000001-00000000000000000002.seg.tmp",
    "x0000000000000000001-00000000000000000002.seg", "00000000000000000001-00000000000000000002.snap",
])
def test_malformed_segment_names_are_refused(name: str) -> None:
    assert parse_segment_name(name) is None


@pytest.mark.parametrize("name", ["42-20261129T140947250000000Z.snap", "00000000000000000042-20261129T140947Z.snap",
                                  "00000000000000000042-20261129T140947250000000Z.seg"])
def test_malformed_snapshot_names_are_refused(name: str) -> None:
    assert parse_snapshot_name(name) is None


def test_every_exported_name_exists() -> None:
    for name in segments.__all__:
        assert hasattr(segments, name), name
    public = {name for name in vars(segments) if not name.startswith("_")}
    modules = {info.name for info in pkgutil.iter_modules(segments.__path__)}
    imported_but_not_exported = public - set(segments.__all__) - modules
    assert not imported_but_not_exported


def test_segments_never_imports_pitr() -> None:
    root = Path(segments.__file__).parent
    for path in root.glob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            assert not any(n == "pitr" or n.startswith("pitr.") for n in names), f"{path.name} imports pitr"


def test_every_module_imports() -> None:
    for info in pkgutil.iter_modules(segments.__path__):
        importlib.import_module(f"segments.{info.name}")
