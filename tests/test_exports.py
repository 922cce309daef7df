"""The public surface: every name in each package's __all__ exists and nothing private leaks."""

from __future__ import annotations

import importlib

import pytest


@pytest.mark.parametrize("package", ["pitr", "segments", "pitr.store", "pitr.restore", "pitr.archiver",
                                     "pitr.audit", "pitr.verify", "pitr.storage", "pitr.sources.etcd",
                                     "pitr.transfer", "pitr.crypto", "pitr.follow", "pitr.undo"])
def test_all_names_exist_and_are_public(package: str) -> None:
    module = importlib.import_module(package)
    names = module.__all__
    assert len(names) == len(set(names))
    for name in names:
        assert not name.startswith("_") or name == "__version__"
        assert hasattr(module, name), f"{package}.{name} is in __all__ but missing"


def test_the_main_entry_points_are_reexported() -> None:
    import pitr

    for name in ("Store", "restore", "RestoreOptions", "RestoreTarget", "archiving", "backup", "verify_repository",
                 "open_repository", "OutsideWindow", "PitrError"):
        assert name in pitr.__all__
