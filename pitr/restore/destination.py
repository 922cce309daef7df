"""Where a restore may write: refusing live stores and repositories, describing what is replaced.

A restore replaces its destination only when nothing can lose data by it:
no live process holds the destination's writer lock (checked when planning
and again, holding that lock, at the moment of the rename), the destination
is neither inside a repository nor holds one, and a non-empty directory that
is not a pitr store is replaced only when the caller names it explicitly
(`replace_foreign`, `--replace-foreign DIR`).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import stat
from collections.abc import Iterable
from dataclasses import dataclass

from pitr.datadir.lock import LOCK_NAME, WriterLock, lock_holder
from pitr.errors import CorruptData, DestinationExists, FileError, StoreLocked, UnsafeDestination, file_error
from pitr.repo import layout

STAGING_INFIX = ".restoring-"
INCOMPLETE_MARK = "RESTORE-INCOMPLETE"
STAGED_ENTRIES = frozenset({"state", "wal", INCOMPLETE_MARK})  # all a staging directory ever holds
MAX_LISTED = 1_000_000  # entries counted when describing a directory (a bound, not a promise)


@dataclass(frozen=True, slots=True)
class Replacement:
    """What a forced restore replaces at its destination."""

    path: str
    kind: str  # "pitr store" or "directory"
    files: int
    size_bytes: int
    store_id: str | None = None
    store_name: str | None = None
    applied_lsn: int | None = None

    def describe(self) -> str:
        what = f"{self.files:,} file{'' if self.files == 1 else 's'}, {_bytes(self.size_bytes)}"
        if self.kind == "pitr store":
            lsn = "" if self.applied_lsn is None else f", applied through LSN {self.applied_lsn}"
            return f"{self.path}: a pitr store ({self.store_name or '?'}, store id {self.store_id}{lsn}; {what})"
        return f"{self.path}: a directory that is not a pitr store ({what})"

    def as_dict(self) -> dict[str, object]:
        return {"path": self.path, "kind": self.kind, "files": self.files, "size_bytes": self.size_bytes,
                "store_id": self.store_id, "store_name": self.store_name, "applied_lsn": self.applied_lsn}


def _bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


def is_repository_dir(path: str) -> bool:
    """Whether `path` looks like a pitr repository (identity document, catalog, or archive segments)."""
    try:
        if os.path.lexists(os.path.join(path, layout.IDENTITY)) or \
                os.path.isdir(os.path.join(path, layout.LOCAL_CATALOG_DIR)):
            return True
        segments = os.path.join(path, layout.SEGMENTS.rstrip("/"))
        return os.path.isdir(segments) and any(n.endswith(".seg") for n in os.listdir(segments))
    except OSError as exc:
        raise file_error(exc, path, "inspect the destination") from exc


def _ancestors(path: str) -> Iterable[str]:
    while True:
        yield path
        parent = os.path.dirname(path)
        if parent == path:
            return
        path = parent


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def check_destination(dest: str, *, force: bool, replace_foreign: bool = False,
                      repo_roots: Iterable[str] = ()) -> Replacement | None:
    """Refuse a destination a restore must not write; describe what a forced restore replaces.

    `dest` is absolute. Returns None when nothing is replaced (no directory,
    or an empty one). Raises UnsafeDestination for a live store, a repository
    (or a path inside or around one), or a foreign directory without
    `replace_foreign`; DestinationExists for a file, or a non-empty directory
    without `force`.
    """
    real = os.path.realpath(dest)
    for root in repo_roots:
        root_real = os.path.realpath(root)
        if _inside(real, root_real) or _inside(root_real, real):
            raise UnsafeDestination(f"{dest}: the destination overlaps the repository {root}",
                                    hint="restore into a directory outside every repository")
    for parent in _ancestors(real):
        if os.path.isdir(parent) and is_repository_dir(parent):
            raise UnsafeDestination(f"{dest}: the destination is inside the repository {parent}",
                                    hint="restore into a directory outside every repository")
        holder = lock_holder(parent) if parent != real else None
        if holder is not None:
            raise UnsafeDestination(f"{dest}: the destination is inside the store {parent}, whose writer "
                                    f"lock is held by {holder.describe()}",
                                    hint="restore into a directory of its own")
    if not os.path.lexists(dest):
        return None
    if os.path.islink(dest):
        raise DestinationExists(f"{dest} is a symbolic link; name the directory itself "
                                f"({os.path.realpath(dest)})")
    if not os.path.isdir(dest):
        raise DestinationExists(f"{dest} exists and is not a directory")
    holder = lock_holder(dest)
    if holder is not None:
        raise UnsafeDestination(f"{dest}: a live process is this store's writer ({holder.describe()}); "
                                "a restore never replaces a store under its writer",
                                hint="stop the writer first, or restore into another directory")
    try:
        entries = os.listdir(dest)
    except OSError as exc:
        raise file_error(exc, dest, "list the destination") from exc
    if not entries:
        return None
    replacement = describe_directory(dest)
    if not force:
        raise DestinationExists(f"{dest} is not empty ({replacement.describe().split(': ', 1)[1]}); "
                                "pass --force (force=True) to replace it")
    if replacement.kind != "pitr store" and not replace_foreign:
        raise UnsafeDestination(
            f"{replacement.describe()}; --force replaces only pitr stores",
            hint=f"to replace it anyway, name it: --replace-foreign {dest}")
    return replacement


def describe_directory(path: str) -> Replacement:
    """Count what a directory holds and, for a pitr store, read its identity and checkpoint."""
    files = size = 0
    try:
        for root, dirs, names in os.walk(path):
            for name in names:
                files += 1
                try:
                    size += os.lstat(os.path.join(root, name)).st_size
                except FileNotFoundError:
                    continue
            if is_repository_dir(root):
                raise UnsafeDestination(f"{path}: the destination holds a repository at {root}",
                                        hint="restore into a directory outside every repository")
            if files >= MAX_LISTED:
                break
            dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(root, d))]
    except OSError as exc:
        raise file_error(exc, path, "inspect the destination") from exc
    store = _store_identity(path)
    if store is None:
        return Replacement(path, "directory", files, size)
    return Replacement(path, "pitr store", files, size, *store)


def _store_identity(path: str) -> tuple[str, str, int] | None:
    """(store id, name, applied LSN) of the pitr store at `path`, or None when it is not one."""
    from pitr.datadir.state import StateDB

    state_dir = os.path.join(path, "state")
    if not os.path.isfile(os.path.join(state_dir, "data.mdb")):
        return None
    try:
        state = StateDB(state_dir, readonly=True)
    except (CorruptData, FileError):
        return None
    try:
        ident = state.identity()
        if ident is None:
            return None
        return str(ident.store_id), ident.name, state.checkpoint()[0]
    except (CorruptData, ValueError, KeyError, TypeError):
        return None  # not a readable store: treated as a foreign directory, replaced only when named
    finally:
        state.close()


def hold_writer_lock(dest: str) -> WriterLock | None:
    """Take the writer lock of the store at `dest` so no writer opens it while it is replaced."""
    if not os.path.exists(os.path.join(dest, LOCK_NAME)) and not os.path.isdir(os.path.join(dest, "state")):
        return None
    try:
        return WriterLock(dest)
    except StoreLocked as exc:
        raise UnsafeDestination(f"{dest}: a live process became this store's writer during the restore "
                                f"({'process ' + str(exc.pid) if exc.pid else 'PID unknown'}); nothing "
                                "was replaced", hint="stop the writer first, or restore into another directory"
                                ) from exc
    except OSError as exc:
        raise file_error(exc, dest, "lock the destination") from exc


def staging_prefix(dest: str) -> str:
    return f".{os.path.basename(dest)}{STAGING_INFIX}"


def lock_staging(path: str) -> int:
    """Hold an flock on a staging directory for the restore's lifetime (so no other restore removes it)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return fd


def remove_stale_staging(dest: str) -> list[str]:
    """Remove the staging directories that killed restores to `dest` left beside it.

    Only directories named `.DEST.restoring-*` that hold nothing but what a
    staging directory holds (RESTORE-INCOMPLETE, state/, wal/) and that no
    running restore holds locked; anything else is left alone.
    """
    parent = os.path.dirname(dest)
    prefix = staging_prefix(dest)
    removed = []
    try:
        names = sorted(n for n in os.listdir(parent) if n.startswith(prefix))
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise file_error(exc, parent, "list the destination's parent") from exc
    for name in names:
        path = os.path.join(parent, name)
        try:
            st = os.lstat(path)
            if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
                continue
            if not set(os.listdir(path)) <= STAGED_ENTRIES:
                continue
            try:
                fd = lock_staging(path)
            except BlockingIOError:
                continue  # a restore running now
            try:
                shutil.rmtree(path)
            finally:
                os.close(fd)
        except OSError as exc:
            raise file_error(exc, path, "remove an interrupted restore's staging directory") from exc
        removed.append(path)
    return removed


def make_private(root: str) -> None:
    """Directories 0700 and files 0600 under `root`, whatever the umask was when they were made."""
    try:
        os.chmod(root, 0o700)
        for top, dirs, names in os.walk(root):
            for name in dirs:
                os.chmod(os.path.join(top, name), 0o700)
            for name in names:
                os.chmod(os.path.join(top, name), 0o600)
    except OSError as exc:
        raise file_error(exc, root, "set permissions") from exc
