"""An async etcd v3 client over the JSON gRPC-gateway, for trio and asyncio (through anyio).

One `EtcdClient` talks to a list of members and fails over between them
(see `GatewayTransport`): a read moves on after any failure, a write only
when it certainly was not applied, and otherwise raises `EtcdUnavailable`,
so a guarded write is never silently sent twice. See docs/etcd.md.
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from types import TracebackType
from typing import Self

from pitr.errors import InvalidArgument

from ._errors import EtcdError
from ._gateway import (
    JSONObject,
    decode_bytes,
    decode_int,
    decode_key_values,
    decode_txn_response,
    encode_bytes,
    encode_compare,
    encode_operation,
    header_revision,
    key_range,
)
from ._range import RangeReader
from ._transport import GatewayTransport
from ._types import (
    Compare,
    Delete,
    DeleteResult,
    Get,
    KeyValue,
    Lease,
    LeaseTimeToLive,
    Member,
    Put,
    RangePage,
    Status,
    TxnOperation,
    TxnResult,
)
from ._watch import WatchStream


class EtcdClient:
    """A connection to an etcd cluster, used as ``async with EtcdClient([...]) as client``.

    ``request_timeout`` bounds one request to one member; ``retry_timeout``
    bounds how long a call keeps trying other members (with backoff) before
    raising `EtcdUnavailable`. ``verify`` is passed to httpx for https
    endpoints. Proxy settings from the environment are ignored: etcd
    members are addressed directly.
    """

    def __init__(self, endpoints: Sequence[str], *, request_timeout: float = 10.0,
                 connect_timeout: float = 2.0, retry_timeout: float = 5.0,
                 verify: ssl.SSLContext | bool = True) -> None:
        self._transport = GatewayTransport(endpoints, request_timeout=request_timeout,
                                           connect_timeout=connect_timeout, retry_timeout=retry_timeout,
                                           verify=verify)

    async def __aenter__(self) -> Self:
        self._transport.open()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        traceback: TracebackType | None) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._transport.aclose()

    @property
    def endpoints(self) -> tuple[str, ...]:
        return self._transport.endpoints

    @property
    def endpoint(self) -> str:
        """The member requests go to first."""
        return self._transport.endpoint

    # -- reads -------------------------------------------------------------------------------------

    async def get(self, key: bytes, *, revision: int | None = None) -> KeyValue | None:
        """The key at ``revision`` (default: now), or None when it does not exist."""
        body = key_range(key, prefix=False)
        if revision is not None:
            body["revision"] = str(_check_revision(revision))
        payload = await self._call("/v3/kv/range", body, idempotent=True, what="range", revision=revision)
        kvs = decode_key_values(payload)
        return kvs[0] if kvs else None

    async def get_range(self, prefix: bytes, *, revision: int | None = None, limit: int = 1000,
                        start_key: bytes | None = None) -> RangePage:
        """One page of the keys under ``prefix`` in key order, starting at ``start_key``.

        Without ``revision`` the page is read at the current revision, which
        the page reports; pass that revision and the page's ``next_key`` to
        read the following pages of the same consistent view.
        """
        if limit < 1:
            raise InvalidArgument(f"limit must be at least 1, got {limit}")
        body = key_range(prefix, prefix=True)
        if start_key is not None:
            if not start_key.startswith(prefix):
                raise InvalidArgument(f"start_key {start_key!r} is not under prefix {prefix!r}")
            body["key"] = encode_bytes(start_key or b"\0")
        body["limit"] = str(limit)
        if revision is not None:
            body["revision"] = str(_check_revision(revision))
        payload = await self._call("/v3/kv/range", body, idempotent=True, what="range", revision=revision)
        kvs = decode_key_values(payload)
        more = bool(payload.get("more", False))
        if more and not kvs:
            raise EtcdError(f"{self.endpoint}: range reported more keys but returned none",
                            endpoint=self.endpoint)
        return RangePage(revision=revision if revision is not None else header_revision(payload), kvs=kvs,
                         count=decode_int(payload, "count"),
                         next_key=kvs[-1].key + b"\0" if more else None)

    def iter_range(self, prefix: bytes, *, revision: int | None = None, page_size: int = 1000) -> RangeReader:
        """The pages of every key under ``prefix``, all read at one revision.

        The first page fixes the revision (unless one is given); etcd keeps
        serving it until it is compacted, when `CompactedError` is raised.
        """
        if page_size < 1:
            raise InvalidArgument(f"page_size must be at least 1, got {page_size}")
        return RangeReader(self, prefix, revision=revision, page_size=page_size)

    async def read_all(self, prefix: bytes, page_size: int = 1000, *,
                       revision: int | None = None) -> tuple[int, list[KeyValue]]:
        """Every key under ``prefix`` at one revision, and that revision."""
        reader = self.iter_range(prefix, revision=revision, page_size=page_size)
        kvs: list[KeyValue] = []
        async for page in reader:
            kvs.extend(page.kvs)
        if reader.revision is None:
            raise EtcdError("range read returned no page")
        return reader.revision, kvs

    def watch(self, prefix: bytes, start_revision: int, *, progress_notify: bool = True,
              idle_timeout: float | None = None) -> WatchStream:
        """Every change under ``prefix`` from ``start_revision`` on, one `WatchBatch` per revision.

        Use as ``async with client.watch(...) as batches: async for batch in batches``.
        The stream resumes on another member after a connection failure
        without losing or repeating a revision. A start revision that etcd
        has compacted raises `CompactedError`. With ``progress_notify`` etcd
        periodically sends a batch without events: complete through its
        revision (the interval is the member's
        ``--experimental-watch-progress-notify-interval``, 10 minutes by
        default). ``idle_timeout`` treats a member silent for that long as
        failed; set it above the progress interval.
        """
        _check_revision(start_revision)
        if idle_timeout is not None and idle_timeout <= 0:
            raise InvalidArgument(f"idle_timeout must be positive, got {idle_timeout}")
        return WatchStream(self._transport, prefix, start_revision, progress_notify=progress_notify,
                           idle_timeout=idle_timeout)

    # -- writes ------------------------------------------------------------------------------------

    async def put(self, key: bytes, value: bytes, lease: int | None = None) -> int:
        """Set ``key`` to ``value``; returns the revision of the write."""
        body = key_range(key, prefix=False)
        body["value"] = encode_bytes(value)
        if lease:
            body["lease"] = str(lease)
        payload = await self._call("/v3/kv/put", body, idempotent=False, what="put")
        return header_revision(payload)

    async def delete(self, key: bytes, *, prefix: bool = False) -> DeleteResult:
        """Delete ``key`` (or every key under it when ``prefix``); returns the revision and count."""
        payload = await self._call("/v3/kv/deleterange", key_range(key, prefix=prefix), idempotent=False,
                                   what="delete")
        return DeleteResult(revision=header_revision(payload), deleted=decode_int(payload, "deleted"))

    async def txn(self, compare: Sequence[Compare], success: Sequence[TxnOperation],
                  failure: Sequence[TxnOperation] = ()) -> TxnResult:
        """Run ``success`` if every guard in ``compare`` holds, else ``failure``, atomically.

        All the writes of one transaction share one revision. etcd limits a
        branch to `DEFAULT_MAX_TXN_OPS` operations and the request to
        `DEFAULT_MAX_REQUEST_BYTES`; `plan_txn_batches` splits larger work.
        """
        body: JSONObject = {
            "compare": [encode_compare(c) for c in compare],
            "success": [encode_operation(op) for op in success],
            "failure": [encode_operation(op) for op in failure],
        }
        read_only = all(isinstance(op, Get) for op in (*success, *failure))
        payload = await self._call("/v3/kv/txn", body, idempotent=read_only, what="txn")
        ran = list(success) if payload.get("succeeded", False) else list(failure)
        return decode_txn_response(payload, ran)

    async def put_many(self, operations: Sequence[Put | Delete]) -> int:
        """Apply puts and deletes atomically in one unguarded transaction; returns its revision."""
        result = await self.txn((), operations)
        return result.revision

    # -- leases, compaction, cluster ---------------------------------------------------------------

    async def grant_lease(self, ttl: int, *, lease_id: int = 0) -> Lease:
        """A new lease of ``ttl`` seconds (etcd picks the ID unless ``lease_id`` is given)."""
        if ttl < 1:
            raise InvalidArgument(f"lease TTL must be at least 1 second, got {ttl}")
        body: JSONObject = {"TTL": str(ttl)}
        if lease_id:
            body["ID"] = str(lease_id)
        payload = await self._call("/v3/lease/grant", body, idempotent=False, what="lease grant")
        return Lease(id=decode_int(payload, "ID"), ttl=decode_int(payload, "TTL"))

    async def revoke_lease(self, lease_id: int) -> None:
        """Revoke a lease, deleting the keys attached to it."""
        await self._call("/v3/lease/revoke", {"ID": str(lease_id)}, idempotent=False, what="lease revoke")

    async def lease_ttl(self, lease_id: int, *, keys: bool = False) -> LeaseTimeToLive:
        """The lease's remaining and granted TTL (ttl -1: expired or unknown), and its keys if asked."""
        payload = await self._call("/v3/lease/timetolive", {"ID": str(lease_id), "keys": keys},
                                   idempotent=True, what="lease time-to-live")
        attached = tuple(decode_bytes({"k": k}, "k") for k in payload.get("keys") or ())
        return LeaseTimeToLive(id=decode_int(payload, "ID"), ttl=decode_int(payload, "TTL"),
                               granted_ttl=decode_int(payload, "grantedTTL"), keys=attached)

    async def compact(self, revision: int, *, physical: bool = False) -> None:
        """Discard history before ``revision``; ``physical`` waits until it is removed from disk."""
        body: JSONObject = {"revision": str(_check_revision(revision)), "physical": physical}
        await self._call("/v3/kv/compaction", body, idempotent=False, what="compaction", revision=revision)

    async def status(self, endpoint: str | None = None) -> Status:
        """What one member (default: any that answers) reports about itself."""
        payload, answered = await self._transport.call("/v3/maintenance/status", {}, idempotent=True,
                                                       what="status", only=endpoint)
        header = payload.get("header") or {}
        return Status(endpoint=answered, version=str(payload.get("version", "")),
                      member_id=decode_int(header, "member_id"), leader=decode_int(payload, "leader"),
                      revision=decode_int(header, "revision"), raft_index=decode_int(payload, "raftIndex"),
                      raft_term=decode_int(payload, "raftTerm"), db_size=decode_int(payload, "dbSize"),
                      errors=tuple(str(e) for e in payload.get("errors") or ()))

    async def member_list(self) -> list[Member]:
        """The cluster's members as the answering member knows them."""
        payload = await self._call("/v3/cluster/member/list", {}, idempotent=True, what="member list")
        return [Member(id=decode_int(m, "ID"), name=str(m.get("name", "")),
                       peer_urls=tuple(m.get("peerURLs") or ()), client_urls=tuple(m.get("clientURLs") or ()))
                for m in payload.get("members") or ()]

    async def _call(self, path: str, body: JSONObject, *, idempotent: bool, what: str,
                    revision: int | None = None) -> JSONObject:
        payload, _ = await self._transport.call(path, body, idempotent=idempotent, what=what, revision=revision)
        return payload


def _check_revision(revision: int) -> int:
    if revision < 1:
        raise InvalidArgument(f"an etcd revision is at least 1, got {revision}")
    return revision
