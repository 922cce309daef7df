"""The public surface of pitr.audit: everything in __all__ exists, nothing private leaks."""

from __future__ import annotations

import pitr.audit


def test_exports() -> None:
    assert sorted(pitr.audit.__all__) == sorted(set(pitr.audit.__all__))
    for name in pitr.audit.__all__:
        assert not name.startswith("_")
        assert getattr(pitr.audit, name).__module__.startswith(("pitr.audit.", "pitr.jsonbytes"))
    assert {"history", "value_at", "commit_log", "diff", "to_import_json", "KeyChange", "KeyDiff",
            "LogCommit"} <= set(pitr.audit.__all__)
