"""--object-lock-days N: every object a command puts into an S3 repository is retained (write-once).

S3 Object Lock in COMPLIANCE mode: each object (segments, snapshots, watermarks,
documents) is put with a retain-until date of its put time plus N days, so
nobody holding the bucket's credentials (ransomware included) can delete or
overwrite it before then. `pitr cleanup` reports what it may not delete yet.
A local directory has no retention: the flag is refused there rather than
accepted and ignored (docs/decisions.md, "Object Lock").
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from pitr.errors import InvalidArgument
from pitr.repo.repository import Repository
from pitr.storage.base import ObjectLock

HELP = ("put every object into the S3 repository with Object Lock retention (COMPLIANCE mode) for N days "
        "from its upload; choose N at least cleanup's --keep-days (the bucket needs Object Lock enabled)")


def add_object_lock(p: argparse.ArgumentParser) -> None:
    p.add_argument("--object-lock-days", type=int, default=None, metavar="N", help=HELP)


def object_lock_of(args: argparse.Namespace) -> ObjectLock | None:
    """The command's `ObjectLock`, or None without the flag (InvalidArgument for a bad N)."""
    days = getattr(args, "object_lock_days", None)
    return None if days is None else ObjectLock(days)


def check_object_lock(repos: Sequence[Repository], lock: ObjectLock | None) -> None:
    """Refuse --object-lock-days for a repository that cannot retain objects (a local directory)."""
    if lock is None:
        return
    from pitr.storage.local import LocalStorage

    for repo in repos:
        if isinstance(repo.storage, LocalStorage):
            error = InvalidArgument(f"--object-lock-days: {repo.url} is a local directory, which has no "
                                    "object retention; nothing would be locked")
            error.hint = "use an s3:// repository in a bucket with Object Lock enabled, or leave out the flag"
            raise error
