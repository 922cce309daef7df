"""Small durable-file helpers shared by the writers: directory fsync, atomic publish, private modes.

Everything pitr creates is private to the user, whatever the umask:
directories 0700 (`PRIVATE_DIR`), files 0600 (`PRIVATE_FILE`).
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from typing import BinaryIO

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600


def fsync_dir(path: str) -> None:
    """fsync a directory so that a rename or create inside it is durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def makedirs_private(path: str) -> None:
    """Create `path` and any missing parents as 0700 directories (an existing directory is left as it is).

    `os.makedirs(mode=...)` applies the mode to the last directory only and
    through the umask; here every directory created gets exactly 0700.
    """
    missing: list[str] = []
    probe = os.path.abspath(path)
    while not os.path.isdir(probe):
        missing.append(probe)
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    for directory in reversed(missing):
        try:
            os.mkdir(directory, PRIVATE_DIR)
        except FileExistsError:
            if not os.path.isdir(directory):
                raise NotADirectoryError(errno.ENOTDIR, "exists and is not a directory", directory) from None
            continue  # created by someone else meanwhile: not ours to change
        os.chmod(directory, PRIVATE_DIR)  # the umask may have removed bits of 0700


def publish_atomically(path: str, write: Callable[[BinaryIO], object], *, overwrite: bool = False) -> None:
    """Write a file through `write` under a temporary name, fsync, and publish it at `path` (mode 0600).

    Without `overwrite`, an existing file at `path` is never replaced
    (FileExistsError). The temporary file is removed on any error.
    """
    import tempfile  # with shutil and random: not for the commands that read or append only

    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
    try:
        os.fchmod(fd, PRIVATE_FILE)  # mkstemp's 0600 today; stated here so the published file's mode is ours
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        if overwrite:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)  # fails with FileExistsError instead of replacing
            os.unlink(tmp)
        fsync_dir(directory)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
