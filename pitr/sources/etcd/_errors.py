"""Errors the etcd client raises, all under pitr.errors.SourceError.

Tree::

    SourceError
    └── EtcdError                 etcd failed or answered with something unusable (endpoint, gRPC code)
        ├── EtcdUnavailable       no endpoint answered; for a write, its outcome is unknown
        ├── CompactedError        the requested revision was compacted (carries compact_revision)
        ├── RequestTooLarge       too many operations or bytes for one request: split it
        └── LeaseNotFound         the lease expired or never existed
"""

from __future__ import annotations

from pitr.errors import SourceError

# gRPC status codes etcd reports through the gateway's JSON errors.
GRPC_INVALID_ARGUMENT = 3
GRPC_NOT_FOUND = 5
GRPC_OUT_OF_RANGE = 11
GRPC_UNAVAILABLE = 14


class EtcdError(SourceError):
    """etcd failed or answered with something pitr cannot use.

    ``endpoint`` is the member that answered (or failed to); ``code`` is
    the gRPC status code etcd reported, when it reported one.
    """

    def __init__(self, message: str, *, endpoint: str | None = None, code: int | None = None) -> None:
        self.endpoint = endpoint
        self.code = code
        super().__init__(message)


class EtcdUnavailable(EtcdError):
    """No endpoint could serve the request.

    For a write this means its outcome is unknown: it may have been applied
    before the connection broke. Read the key (or the revision) to find out.
    """


class CompactedError(EtcdError):
    """The requested revision is older than etcd's compaction point.

    ``compact_revision`` is the oldest revision etcd still has, when etcd
    said (a watch does; a range read does not). Archiving cannot continue
    without a gap: take a new base snapshot at the current revision.
    """

    def __init__(self, compact_revision: int | None, *, endpoint: str | None = None,
                 requested_revision: int | None = None, code: int | None = None) -> None:
        self.compact_revision = compact_revision
        self.requested_revision = requested_revision
        requested = f"revision {requested_revision}" if requested_revision is not None else "the requested revision"
        oldest = (f"; the oldest revision left is {compact_revision}" if compact_revision is not None else "")
        where = f"{endpoint}: " if endpoint else ""
        super().__init__(f"{where}{requested} has been compacted{oldest}; "
                         "take a new snapshot of the current revision to continue archiving",
                         endpoint=endpoint, code=code)


class RequestTooLarge(EtcdError):
    """etcd refused a request with too many operations or too many bytes.

    Split it with `plan_txn_batches` (defaults: 128 operations, 1.5 MiB),
    or raise the member's ``--max-txn-ops`` / ``--max-request-bytes``.
    """


class LeaseNotFound(EtcdError):
    """The lease expired, was revoked, or never existed."""
