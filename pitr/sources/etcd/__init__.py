"""etcd as a pitr source: an async v3 client over etcd's JSON gRPC-gateway.

One etcd revision is one pitr commit; the watch stream delivers them as
`WatchBatch` values. See docs/etcd.md.
"""

from ._errors import CompactedError, EtcdError, EtcdUnavailable, LeaseNotFound, RequestTooLarge
from ._range import RangeReader
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
from .client import EtcdClient

__all__ = [
    "DEFAULT_MAX_REQUEST_BYTES",
    "DEFAULT_MAX_TXN_OPS",
    "TXN_OP_OVERHEAD_BYTES",
    "CompactedError",
    "Compare",
    "Delete",
    "DeleteResult",
    "EtcdClient",
    "EtcdError",
    "EtcdUnavailable",
    "EventType",
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
    "estimate_txn_bytes",
    "normalize_endpoint",
    "plan_txn_batches",
]
