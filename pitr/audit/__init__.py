"""Audit and time travel: the history of any key, without restoring anything.

* `history`: every archived change to a key, oldest first;
* `value_at`: a key's value at a moment, exactly as a restore to it would hold it;
* `commit_log` and `to_import_json`: the commits in a range, and their JSON-lines form;
* `diff`: keys added, removed and changed between two moments.

All read an open `Repository` whose catalog is synced (`await repo.sync()`).
"""

from pitr.audit.at import ValueReader, open_value_reader, value_at
from pitr.audit.diff import KeyDiff, diff
from pitr.audit.history import KeyChange, history
from pitr.audit.log import LogCommit, LogOp, commit_log, to_import_json
from pitr.jsonbytes import bytes_from_json, bytes_to_json

__all__ = [
    "KeyChange",
    "KeyDiff",
    "LogCommit",
    "LogOp",
    "ValueReader",
    "bytes_from_json",
    "bytes_to_json",
    "commit_log",
    "diff",
    "history",
    "open_value_reader",
    "to_import_json",
    "value_at",
]
