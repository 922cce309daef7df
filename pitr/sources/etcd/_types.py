"""Values exchanged with etcd: key-values, watch batches, transaction operations, limits."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from pitr.errors import InvalidArgument

#: etcd's default ``--max-txn-ops``: operations allowed in one transaction (per branch).
DEFAULT_MAX_TXN_OPS = 128
#: etcd's default ``--max-request-bytes`` (1.5 MiB): the largest request a member accepts.
DEFAULT_MAX_REQUEST_BYTES = 1_572_864
#: Bytes of protobuf framing counted per transaction operation by `estimate_txn_bytes`,
#: a generous bound on tags, lengths and the lease field.
TXN_OP_OVERHEAD_BYTES = 32


@dataclass(frozen=True, slots=True)
class KeyValue:
    """One key as etcd stores it at some revision.

    ``version`` counts modifications since the key was created (1 on creation);
    ``lease`` is 0 when the key has no lease.
    """

    key: bytes
    value: bytes
    create_revision: int
    mod_revision: int
    version: int
    lease: int = 0


@dataclass(frozen=True, slots=True)
class RangePage:
    """One page of a range read.

    ``revision`` is the revision the page was read at; every page of one
    read has the same revision. ``next_key`` is where the next page starts,
    or None when this page is the last.
    """

    revision: int
    kvs: tuple[KeyValue, ...]
    count: int
    next_key: bytes | None

    @property
    def more(self) -> bool:
        return self.next_key is not None


class EventType(enum.Enum):
    PUT = "PUT"
    DELETE = "DELETE"


@dataclass(frozen=True, slots=True)
class WatchEvent:
    """A put or delete of one key; a delete has an empty value and lease 0."""

    type: EventType
    key: bytes
    value: bytes
    mod_revision: int
    create_revision: int = 0
    version: int = 0
    lease: int = 0


@dataclass(frozen=True, slots=True)
class WatchBatch:
    """Everything that happened under the watched prefix at one etcd revision.

    A batch with events is one etcd revision, so one pitr commit: all the
    keys one transaction changed arrive together. A batch without events is
    a progress notification: as of the moment it arrives, the stream is
    complete through ``revision`` (every event under the prefix at or below
    it was already delivered). Its revision may equal the previous batch's:
    it then says that nothing has happened since.
    """

    revision: int
    events: tuple[WatchEvent, ...] = ()

    @property
    def is_progress(self) -> bool:
        return not self.events


CompareTarget = Literal["VERSION", "CREATE", "MOD", "VALUE", "LEASE"]
CompareOperator = Literal["==", "!=", "<", ">"]

_COMPARE_RESULTS: dict[str, str] = {"==": "EQUAL", "!=": "NOT_EQUAL", "<": "LESS", ">": "GREATER"}


@dataclass(frozen=True, slots=True)
class Compare:
    """A transaction guard on one key, built with the class methods.

    ``Compare.version(b"k", "==", 0)`` holds when the key does not exist;
    ``Compare.mod_revision(b"k", "<", rev)`` guards against a concurrent write.
    """

    key: bytes
    target: CompareTarget
    operator: CompareOperator
    operand: int | bytes

    def __post_init__(self) -> None:
        if self.operator not in _COMPARE_RESULTS:
            raise InvalidArgument(f"compare operator {self.operator!r} is not one of ==, !=, <, >")
        if (self.target == "VALUE") != isinstance(self.operand, bytes):
            raise InvalidArgument(f"compare on {self.target} needs a {'bytes' if self.target == 'VALUE' else 'int'} "
                                  f"operand, got {self.operand!r}")

    @classmethod
    def version(cls, key: bytes, operator: CompareOperator, version: int) -> Compare:
        return cls(key, "VERSION", operator, version)

    @classmethod
    def create_revision(cls, key: bytes, operator: CompareOperator, revision: int) -> Compare:
        return cls(key, "CREATE", operator, revision)

    @classmethod
    def mod_revision(cls, key: bytes, operator: CompareOperator, revision: int) -> Compare:
        return cls(key, "MOD", operator, revision)

    @classmethod
    def value(cls, key: bytes, operator: CompareOperator, value: bytes) -> Compare:
        return cls(key, "VALUE", operator, value)

    @classmethod
    def lease(cls, key: bytes, operator: CompareOperator, lease_id: int) -> Compare:
        return cls(key, "LEASE", operator, lease_id)

    @property
    def result(self) -> str:
        return _COMPARE_RESULTS[self.operator]


@dataclass(frozen=True, slots=True)
class Put:
    """Transaction operation: set ``key`` to ``value`` (attached to ``lease`` unless 0)."""

    key: bytes
    value: bytes
    lease: int = 0


@dataclass(frozen=True, slots=True)
class Delete:
    """Transaction operation: delete ``key``, or every key under it when ``prefix``."""

    key: bytes
    prefix: bool = False


@dataclass(frozen=True, slots=True)
class Get:
    """Transaction operation: read ``key``, or every key under it when ``prefix``."""

    key: bytes
    prefix: bool = False


TxnOperation = Put | Delete | Get


@dataclass(frozen=True, slots=True)
class PutResult:
    revision: int


@dataclass(frozen=True, slots=True)
class DeleteResult:
    revision: int
    deleted: int


@dataclass(frozen=True, slots=True)
class GetResult:
    revision: int
    kvs: tuple[KeyValue, ...]


TxnOperationResult = PutResult | DeleteResult | GetResult


@dataclass(frozen=True, slots=True)
class TxnResult:
    """Whether the guards held, the revision after the transaction, one result per operation run."""

    succeeded: bool
    revision: int
    responses: tuple[TxnOperationResult, ...] = ()


@dataclass(frozen=True, slots=True)
class Lease:
    id: int
    ttl: int


@dataclass(frozen=True, slots=True)
class LeaseTimeToLive:
    """A lease's remaining and granted TTL in seconds; ``ttl`` is -1 once it expired or never existed."""

    id: int
    ttl: int
    granted_ttl: int
    keys: tuple[bytes, ...] = ()

    @property
    def expired(self) -> bool:
        return self.ttl < 0


@dataclass(frozen=True, slots=True)
class Status:
    """What one member reports about itself (``/v3/maintenance/status``)."""

    endpoint: str
    version: str
    member_id: int
    leader: int
    revision: int
    raft_index: int
    raft_term: int
    db_size: int
    errors: tuple[str, ...] = ()

    @property
    def is_leader(self) -> bool:
        return self.member_id == self.leader


@dataclass(frozen=True, slots=True)
class Member:
    id: int
    name: str
    peer_urls: tuple[str, ...] = field(default=())
    client_urls: tuple[str, ...] = field(default=())


def estimate_txn_bytes(operations: Sequence[TxnOperation]) -> int:
    """An upper estimate of the request size etcd counts for a transaction of these operations."""
    total = 0
    for operation in operations:
        total += len(operation.key) + TXN_OP_OVERHEAD_BYTES
        if isinstance(operation, Put):
            total += len(operation.value)
    return total


def plan_txn_batches(operations: Sequence[TxnOperation], *, max_ops: int = DEFAULT_MAX_TXN_OPS,
                     max_bytes: int = DEFAULT_MAX_REQUEST_BYTES) -> list[list[TxnOperation]]:
    """Split operations into consecutive batches that each fit one etcd transaction.

    Each batch applies atomically, the sequence does not: a caller restoring
    one pitr commit that needs several batches must say so. A key written
    twice starts a new batch, because etcd rejects a transaction that
    names the same key in two writes. A single
    operation larger than ``max_bytes`` raises InvalidArgument, since etcd
    would reject it whatever the batching.
    """
    if max_ops < 1 or max_bytes < 1:
        raise InvalidArgument(f"max_ops and max_bytes must be positive, got {max_ops} and {max_bytes}")
    batches: list[list[TxnOperation]] = []
    current: list[TxnOperation] = []
    current_bytes = 0
    written: set[bytes] = set()
    for operation in operations:
        size = estimate_txn_bytes([operation])
        if size > max_bytes:
            raise InvalidArgument(f"operation on key {operation.key[:64]!r} needs about {size} bytes, "
                                  f"more than etcd's request limit of {max_bytes} bytes")
        rewrites = not isinstance(operation, Get) and operation.key in written
        if current and (len(current) >= max_ops or current_bytes + size > max_bytes or rewrites):
            batches.append(current)
            current, current_bytes = [], 0
            written.clear()
        current.append(operation)
        current_bytes += size
        if not isinstance(operation, Get):
            written.add(operation.key)
    if current:
        batches.append(current)
    return batches
