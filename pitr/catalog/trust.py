"""Whether the catalog's LMDB file is known to be structurally sound, without walking it again.

`pitr.catalog.pagecheck` walks every page, which costs time in proportion
to the file. Its verdict is kept in `CATALOG/checked`: the identity of the
file it passed (device, inode, size, modification and change times, and a
CRC-32C of the two meta pages). Any write to the file, a copy or a restore
from a backup changes that identity, so the walk runs again; pitr's own
writer, which opened a file that was sound and changes it only through
LMDB, records the new identity after each transaction it commits (only
when the file was still the one recorded when the transaction began).

The marker is a cache: a missing, unreadable or stale one only costs a
walk. It is sealed with a checksum, so a damaged marker never vouches for
anything.
"""

from __future__ import annotations

import errno
import os

from pitr.catalog.rows import dump_json, load_json, seal, unseal
from pitr.errors import CatalogDamaged, file_error
from segments.crc import crc32c

MARKER = "checked"
_META_BYTES = 2 << 16  # both meta pages, whatever the page size
_CACHE_ONLY = (errno.EACCES, errno.EPERM, errno.EROFS)


def file_identity(directory: str) -> list[int] | None:
    """What changes whenever `directory/data.mdb` does (None when there is no such file)."""
    path = os.path.join(directory, "data.mdb")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise file_error(exc, path, "read the catalog") from exc
    try:
        st = os.fstat(fd)
        head = os.pread(fd, _META_BYTES, 0)
    except OSError as exc:
        raise file_error(exc, path, "read the catalog") from exc
    finally:
        os.close(fd)
    return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, crc32c(head)]


def recorded_identity(directory: str) -> list[int] | None:
    """The identity the marker vouches for, or None (no marker, or one that fails its checksum)."""
    path = os.path.join(directory, MARKER)
    try:
        with open(path, "rb") as fh:
            raw = fh.read(4096)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise file_error(exc, path, "read the catalog's check marker") from exc
    try:
        value = load_json(unseal(b"checked", b"", raw, path))
    except (CatalogDamaged, ValueError):
        return None  # never vouches: the walk runs again
    if not (isinstance(value, list) and len(value) == 6 and all(type(v) is int for v in value)):
        return None
    return value


def record_identity(directory: str, identity: list[int]) -> None:
    """Vouch for `identity` (published by rename; not fsynced: a lost marker only costs a walk)."""
    path = os.path.join(directory, MARKER)
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, seal(b"checked", b"", dump_json(identity)))
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if exc.errno in _CACHE_ONLY:
            return  # a catalog the user may read but not write: every command walks it
        raise file_error(exc, path, "record the catalog's check") from exc

