"""etcd as a pitr source: an async v3 client over etcd's JSON gRPC-gateway, the archiver that
follows a prefix into a spool store (`etcd_archiving`), and restore into etcd (`restore_to_etcd`).

One etcd revision is one pitr commit; the watch stream delivers them as
`WatchBatch` values. See docs/etcd.md.
"""

from ._errors import CompactedError, EtcdError, EtcdUnavailable, LeaseNotFound, RequestTooLarge
from ._range import RangeReader
from ._spool import default_spool_dir, source_revision_at
from ._transport import normalize_endpoint
from ._types import (
    DEFAULT_MAX_REQUEST_BYTES,
    DEFAULT_MAX_TXN_OPS,
    TXN_OP_OVERHEAD_BYTES,
    Compare,
    Delete,
    DeleteResult,
    EventType,
    Get,
    GetResult,
    KeyValue,
    Lease,
    LeaseTimeToLive,
    Member,
    Put,
    PutResult,
    RangePage,
    Status,
    TxnOperation,
    TxnOperationResult,
    TxnResult,
    WatchBatch,
    WatchEvent,
    estimate_txn_bytes,
    plan_txn_batches,
)
from ._watch import WatchStream
from .archive import EtcdArchive, etcd_archiving
from .client import EtcdClient
from .follower import EtcdFollower, FollowOptions
from .restore import EtcdRestoreOptions, EtcdRestoreResult, restore_to_etcd, source_prefix_of
from .url import EtcdLocation, is_etcd_url, parse_etcd_url

__all__ = [
    "DEFAULT_MAX_REQUEST_BYTES",
    "DEFAULT_MAX_TXN_OPS",
    "TXN_OP_OVERHEAD_BYTES",
    "CompactedError",
    "Compare",
    "Delete",
    "DeleteResult",
    "EtcdArchive",
    "EtcdClient",
    "EtcdError",
    "EtcdFollower",
    "EtcdLocation",
    "EtcdRestoreOptions",
    "EtcdRestoreResult",
    "EtcdUnavailable",
    "EventType",
    "FollowOptions",
    "Get",
    "GetResult",
    "KeyValue",
    "Lease",
    "LeaseNotFound",
    "LeaseTimeToLive",
    "Member",
    "Put",
    "PutResult",
    "RangePage",
    "RangeReader",
    "RequestTooLarge",
    "Status",
    "TxnOperation",
    "TxnOperationResult",
    "TxnResult",
    "WatchBatch",
    "WatchEvent",
    "WatchStream",
    "default_spool_dir",
    "estimate_txn_bytes",
    "etcd_archiving",
    "is_etcd_url",
    "normalize_endpoint",
    "parse_etcd_url",
    "plan_txn_batches",
    "restore_to_etcd",
    "source_prefix_of",
    "source_revision_at",
]
