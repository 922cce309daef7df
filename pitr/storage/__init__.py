"""Repository backends: where archived segments, snapshots and the catalog are published.

`open_storage` turns a repository URL into a backend through an explicit
scheme-to-factory table:

=====================  ==============
``/path``, ``file://``  LocalStorage
``s3://bucket/prefix``  S3Storage
=====================  ==============
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pitr.errors import InvalidArgument
from pitr.storage.base import ObjectInfo, ObjectLock, Storage
from pitr.storage.local import LocalStorage
from pitr.storage.ratelimit import NO_LIMITS, TransferLimits

if TYPE_CHECKING:
    from pitr.storage.s3 import S3Storage

__all__ = ["LocalStorage", "ObjectInfo", "ObjectLock", "S3Storage", "Storage", "TransferLimits", "open_storage"]

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


@dataclass(frozen=True, slots=True, kw_only=True)
class _OpenOptions:
    s3_endpoint: str | None
    limits: TransferLimits
    object_lock: ObjectLock | None = None


def _open_file(url: str, options: _OpenOptions) -> Storage:
    path = _SCHEME.sub("", url, count=1)
    if not path:
        raise InvalidArgument(f"{url!r} names no directory")
    return LocalStorage(path, object_lock=options.object_lock)


def _open_s3(url: str, options: _OpenOptions) -> Storage:
    from pitr.storage.s3 import S3Storage

    return S3Storage(url, endpoint_url=options.s3_endpoint, limits=options.limits, object_lock=options.object_lock)


def __getattr__(name: str) -> type[S3Storage]:
    # boto3 takes a third of a second to import: only a command that opens an S3 repository pays for it
    if name == "S3Storage":
        from pitr.storage.s3 import S3Storage

        return S3Storage
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_FACTORIES: dict[str, Callable[[str, _OpenOptions], Storage]] = {
    "file": _open_file,
    "s3": _open_s3,
}


def open_storage(url: str, *, s3_endpoint: str | None = None, limits: TransferLimits = NO_LIMITS,
                 object_lock: ObjectLock | None = None) -> Storage:
    """The backend for a repository URL: a plain path, ``file://path`` or ``s3://bucket/prefix``.

    `s3_endpoint` points S3 URLs at an S3-compatible server (else AWS_ENDPOINT_URL
    or AWS itself). `limits` caps a remote backend's transfer rates (a local
    directory is not a network transfer and is not capped). `object_lock` gives every object put
    write-once retention (S3 Object Lock; a no-op on a local directory). A remote repository's local cache (catalog, downloads) is the
    repository's business (`open_repository(cache_dir=)`), not the backend's.
    """
    if not url.strip():
        raise InvalidArgument("empty repository URL")
    match = _SCHEME.match(url)
    scheme = match.group(1).lower() if match else "file"
    factory = _FACTORIES.get(scheme)
    if factory is None:
        known = ", ".join(f"{name}://" for name in sorted(_FACTORIES))
        raise InvalidArgument(f"unknown repository URL scheme in {url!r}; use a path or one of {known}")
    return factory(url, _OpenOptions(s3_endpoint=s3_endpoint, limits=limits, object_lock=object_lock))
