"""Which packages may import which, checked on the code's own imports (tests/helpers/import_graph.py).

- `segments` never imports `pitr`.
- No circle among `pitr.store`, `pitr.archiver`, `pitr.snapshots`, `pitr.datadir`.
- Nothing imports another package's private module (`_name.py`), nor a private name
  (`from pkg.module import _name`) from outside the package that defines it.
- The layers: `pitr.datadir` stands on `pitr.errors`, `pitr.lmdbfile`, `pitr.lmdbpages`, `pitr.timefmt` and `segments`;
  `pitr.store` on `pitr.datadir`, `pitr.errors`, `pitr.timefmt` and `segments`; the archiver never
  imports the store, the snapshots or the composition above both (`pitr.archiving`).

Each rule is also tried on a small planted tree, so a rule that stopped catching anything fails too.
A failure names the importing file and line.
"""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from tests.helpers.import_graph import (
    Import,
    Module,
    describe,
    forbidden_imports,
    import_graph,
    layer_violations,
    package_cycles,
    private_imports,
    private_name_imports,
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TREE = ("pitr", "segments")
CORE = ("pitr.store", "pitr.archiver", "pitr.snapshots", "pitr.datadir")
LAYERS = {
    "pitr.datadir": ("pitr.errors", "pitr.jsontypes", "pitr.lmdbfile", "pitr.lmdbpages", "pitr.timefmt", "segments"),
    "pitr.store": ("pitr.datadir", "pitr.errors", "pitr.jsontypes", "pitr.timefmt", "segments"),
}
ARCHIVER_NEVER = ("pitr.store", "pitr.snapshots", "pitr.archiving")


@pytest.fixture(scope="module")
def graph() -> tuple[dict[str, Module], list[Import]]:
    return import_graph(ROOT, TREE)


def test_the_graph_sees_the_code(graph: tuple[dict[str, Module], list[Import]]) -> None:
    """The walk finds the packages, lazy imports inside functions and relative imports."""
    modules, edges = graph
    for name in ("pitr", "pitr.store.store", "pitr.datadir.state", "segments.wal", "pitr.sources.etcd._errors"):
        assert name in modules, f"{name} was not found under {ROOT}"
    targets = {(e.source, e.target) for e in edges}
    assert ("pitr.store.log", "pitr.datadir.datadir") in targets
    assert ("pitr.sources.etcd.client", "pitr.sources.etcd._errors") in targets, "a relative import"
    assert len(edges) > 500


def test_segments_never_imports_pitr(graph: tuple[dict[str, Module], list[Import]]) -> None:
    _, edges = graph
    found = forbidden_imports(edges, "segments", ["pitr"])
    assert not found, "segments imports pitr:\n" + describe(found)


def test_no_circle_among_store_archiver_snapshots_and_datadir(graph: tuple[dict[str, Module], list[Import]]) -> None:
    modules, edges = graph
    cycles = package_cycles(edges, modules, CORE)
    assert not cycles, "circles among the core packages:\n" + "\n\n".join(describe(c) for c in cycles)


def test_no_import_of_another_packages_private_module(graph: tuple[dict[str, Module], list[Import]]) -> None:
    modules, edges = graph
    found = private_imports(edges, modules)
    assert not found, "private modules imported from outside their package:\n" + describe(found)


def test_no_import_of_another_packages_private_name(graph: tuple[dict[str, Module], list[Import]]) -> None:
    modules, edges = graph
    found = private_name_imports(edges, modules)
    assert not found, "private names imported from outside their package:\n" + describe(found)


@pytest.mark.parametrize("layer", sorted(LAYERS))
def test_a_layer_imports_only_what_is_below_it(graph: tuple[dict[str, Module], list[Import]], layer: str) -> None:
    _, edges = graph
    found = layer_violations(edges, layer, LAYERS[layer], TREE)
    assert not found, f"{layer} may import only {', '.join(LAYERS[layer])}:\n" + describe(found)


def test_the_archiver_never_imports_the_store_snapshots_or_the_composition(
        graph: tuple[dict[str, Module], list[Import]]) -> None:
    _, edges = graph
    found = forbidden_imports(edges, "pitr.archiver", ARCHIVER_NEVER)
    assert not found, "the archiver imports what is composed above it:\n" + describe(found)


# -- the rules catch what they name (a planted tree) ------------------------------------------------


def plant(root: Path, files: dict[str, str]) -> tuple[dict[str, Module], list[Import]]:
    for name, source in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))
    return import_graph(str(root), TREE)


CLEAN = {
    "pitr/__init__.py": "",
    "pitr/errors.py": "",
    "pitr/archiving.py": "from pitr.store import Store\nfrom pitr.archiver import Archiver\n",
    "pitr/datadir/state.py": "import lmdb\nfrom pitr.errors import CorruptData\nfrom segments.fold import Change\n",
    "pitr/store/__init__.py": "from .store import Store\n",
    "pitr/store/_group.py": "import threading\n",
    "pitr/store/batch.py": "from pitr.store.store import _stamp\nfrom .store import __all__\n",
    "pitr/store/store.py": "from pitr.datadir import state\nfrom ._group import Group\nfrom . import _group\n",
    "pitr/archiver/archiver.py": "from pitr.datadir.state import StateDB\n",
    "pitr/snapshots/take.py": "from pitr.archiver.archiver import Archiver\n",
    "segments/__init__.py": "from segments.fold import Change\n",
    "segments/_errors.py": "",
    "segments/fold.py": "from ._errors import SegmentsError\n",
}


def test_a_clean_tree_passes_every_rule(tmp_path: Path) -> None:
    modules, edges = plant(tmp_path, CLEAN)
    assert forbidden_imports(edges, "segments", ["pitr"]) == []
    assert package_cycles(edges, modules, CORE) == []
    assert private_imports(edges, modules) == []
    assert private_name_imports(edges, modules) == []
    for layer, allowed in LAYERS.items():
        assert layer_violations(edges, layer, allowed, TREE) == []
    assert forbidden_imports(edges, "pitr.archiver", ARCHIVER_NEVER) == []


def where(found: list[Import]) -> list[str]:
    return [f"{e.path}:{e.line} {e.target}" for e in found]


def test_segments_importing_pitr_is_caught_even_inside_a_function(tmp_path: Path) -> None:
    _, edges = plant(tmp_path, {**CLEAN, "segments/wal.py": "import os\n\ndef f():\n    import pitr.errors\n"})
    assert where(forbidden_imports(edges, "segments", ["pitr"])) == ["segments/wal.py:4 pitr.errors"]


def test_a_circle_is_caught_with_each_import_that_closes_it(tmp_path: Path) -> None:
    planted = {**CLEAN, "pitr/datadir/wal.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                                               "    from pitr.snapshots.take import take\n"}
    modules, edges = plant(tmp_path, planted)
    cycles = package_cycles(edges, modules, CORE)
    assert [where(c) for c in cycles] == [[
        "pitr/archiver/archiver.py:1 pitr.datadir.state",
        "pitr/datadir/wal.py:3 pitr.snapshots.take",
        "pitr/snapshots/take.py:1 pitr.archiver.archiver",
    ]]


def test_a_private_module_of_another_package_is_caught(tmp_path: Path) -> None:
    planted = {**CLEAN, "pitr/datadir/lock.py": "from segments._errors import SegmentsError\n",
               "pitr/cli/get.py": "def f():\n    from ..store import _group\n",
               "pitr/repo/x.py": "import importlib\nimportlib.import_module('pitr.store._group')\n"}
    modules, edges = plant(tmp_path, planted)
    assert sorted(where(private_imports(edges, modules))) == [
        "pitr/cli/get.py:2 pitr.store._group",
        "pitr/datadir/lock.py:1 segments._errors",
        "pitr/repo/x.py:2 pitr.store._group",
    ]


def test_a_private_name_of_another_package_is_caught(tmp_path: Path) -> None:
    planted = {**CLEAN, "pitr/archiver/archiver.py": "from pitr.store.store import _stamp\n",
               "pitr/cli/get.py": "from pitr.store import _private_helper\n"}
    modules, edges = plant(tmp_path, planted)
    assert sorted(where(private_name_imports(edges, modules))) == [
        "pitr/archiver/archiver.py:1 pitr.store.store", "pitr/cli/get.py:1 pitr.store"]


def test_a_layer_reaching_up_is_caught(tmp_path: Path) -> None:
    planted = {**CLEAN, "pitr/datadir/reader.py": "from pitr.store import Store\n",
               "pitr/store/store.py": CLEAN["pitr/store/store.py"] + "from pitr.repo.layout import x\n"
                                      "import pitr\n"}
    _, edges = plant(tmp_path, planted)
    assert where(layer_violations(edges, "pitr.datadir", LAYERS["pitr.datadir"], TREE)) == [
        "pitr/datadir/reader.py:1 pitr.store"]
    assert where(layer_violations(edges, "pitr.store", LAYERS["pitr.store"], TREE)) == [
        "pitr/store/store.py:4 pitr.repo.layout", "pitr/store/store.py:5 pitr"]


def test_the_archiver_importing_the_store_or_the_composition_is_caught(tmp_path: Path) -> None:
    planted = {**CLEAN, "pitr/archiver/sources.py": "from pitr import archiving\n\ndef f():\n"
                                                    "    from pitr.store.store import Store\n"}
    _, edges = plant(tmp_path, planted)
    assert where(forbidden_imports(edges, "pitr.archiver", ARCHIVER_NEVER)) == [
        "pitr/archiver/sources.py:1 pitr.archiving", "pitr/archiver/sources.py:4 pitr.store.store"]
