"""Audit and time travel: the history of any key, without restoring anything.

* `history`: every archived change to a key, oldest first;
* `value_at`: a key's value at a moment, exactly as a restore to it would hold it;
* `commit_log` and `to_import_json`: the commits in a range, and their JSON-lines form;
* `diff`: keys added, removed and changed between two moments.

All read an open `Repository` whose catalog is synced (`await repo.sync()`).
An answer that spans a hole in the archived history (`find_holes`) raises
`pitr.errors.HistoryGap` naming it, unless the caller passes `allow_gaps=True`;
`history_entries` and `log_entries` then yield each hole in place as a `Gap`.
"""

from pitr.audit.at import ValueReader, open_value_reader, value_at
from pitr.audit.diff import KeyDiff, diff
from pitr.audit.history import KeyChange, history, history_entries
from pitr.audit.holes import Hole, find_holes, gap_json
from pitr.audit.log import LogCommit, LogOp, commit_log, log_entries, to_import_json
from pitr.jsonbytes import bytes_from_json, bytes_to_json

__all__ = [
    "Hole",
    "KeyChange",
    "KeyDiff",
    "LogCommit",
    "LogOp",
    "ValueReader",
    "bytes_from_json",
    "bytes_to_json",
    "commit_log",
    "diff",
    "find_holes",
    "gap_json",
    "history",
    "history_entries",
    "log_entries",
    "open_value_reader",
    "to_import_json",
    "value_at",
]
