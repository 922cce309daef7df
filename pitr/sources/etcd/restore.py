"""Restoring into etcd: build the state at a moment with pitr's restore, then write it through transactions.

The state is built into a temporary store directory exactly as `pitr restore`
builds one (planning, verification, replay), then compared with what the
destination prefix holds at one revision: keys that differ are put, keys the
restored state lacks are deleted, identical keys are left alone. The writes go
in transactions within etcd's limits (`plan_txn_batches`), several in flight.
Each transaction is atomic, the whole restore is not: watchers see the prefix
change in steps. See docs/etcd.md.
"""

from __future__ import annotations

import base64
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import anyio
import anyio.abc

from pitr.datadir.state import StateDB
from pitr.errors import DestinationExists, InvalidArgument
from pitr.repo.repository import Repository
from pitr.restore import KeySelection, RestoreOptions, RestorePlan, RestoreTarget, plan_restore, restore

from ._errors import EtcdUnavailable, LeaseNotFound
from ._spool import SpoolCursor, source_revision_at
from ._types import DEFAULT_MAX_REQUEST_BYTES, DEFAULT_MAX_TXN_OPS, Delete, Get, Put, plan_txn_batches
from .archive import _sole_failure
from .client import EtcdClient

if TYPE_CHECKING:
    from pitr.repo.witness import Witness

Progress = Callable[[str, int, int], None]
Say = Callable[[str], None]
_Item = tuple[Put | Delete, int | None]  # an operation and, for a put, the TTL (s) its lease needs
_NS = 1_000_000_000
_WRITE_ATTEMPTS = 3


@dataclass(frozen=True, kw_only=True, slots=True)
class EtcdRestoreOptions:
    """What to restore and how to write it into etcd.

    `prefix` is the destination prefix; by default the prefix the archive
    was taken from. Keys keep their part after the source prefix (an
    archive of an embedded store puts its keys under `prefix` unchanged).
    `force` allows writing into a prefix that already holds keys. `pause_gc` pauses Python's
    cyclic garbage collector for the whole process while the state is built (see
    `RestoreOptions`). `witness` (a directory, an `s3://` URL or an opened
    `pitr.repo.witness.Witness`; `witness_s3_endpoint` for a URL, by default the repository's)
    first checks every repository against that witness's signed checkpoints: one rolled back,
    rewritten or given another identity is refused (`CorruptData`) before etcd is read or written.
    """

    target: RestoreTarget
    prefix: bytes | None = None
    force: bool = False
    verify: bool = True
    dry_run: bool = False
    max_txn_ops: int = DEFAULT_MAX_TXN_OPS
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    concurrency: int = 4
    work_dir: str | None = None
    pause_gc: bool = False
    selection: KeySelection | None = None  # one archived prefix: only it is restored and replaced
    witness: str | Witness | None = None
    witness_s3_endpoint: str | None = None

    def __post_init__(self) -> None:
        if self.max_txn_ops < 1 or self.max_request_bytes < 1 or self.concurrency < 1:
            raise InvalidArgument("max_txn_ops, max_request_bytes and concurrency must be positive")
        selection = self.selection
        if selection is not None and (len(selection.prefixes) != 1 or selection.keys or selection.strip_prefix
                                      or selection.add_prefix):
            raise InvalidArgument("into etcd, restore part of the keys with one --prefix (no --key, "
                                  "--strip-prefix or --add-prefix): the restore replaces what etcd holds under it")


@dataclass(frozen=True, slots=True)
class EtcdRestoreResult:
    """What a restore into etcd did.

    `source_revision` is the etcd revision the restored state had in the
    archived cluster (None for an archive of an embedded store);
    `first_revision`..`last_revision` are the destination's revisions of the
    restore's transactions.
    """

    endpoint: str
    prefix: bytes
    target_lsn: int
    target_ts_ns: int
    source_revision: int | None
    keys: int
    written: int
    unchanged: int
    deleted: int
    expired_dropped: int
    leases: int
    transactions: int
    first_revision: int | None
    last_revision: int | None
    seconds: float


async def restore_to_etcd(repos: Repository | Sequence[Repository], client: EtcdClient,
                          options: EtcdRestoreOptions, *, progress: Progress | None = None,
                          say: Say | None = None) -> RestorePlan | EtcdRestoreResult:
    """Write the state at `options.target` under a prefix of the etcd cluster `client` talks to.

    Returns the plan for a dry run. Refuses (DestinationExists) a prefix that
    holds keys unless `force`; keys with a TTL get a lease of their remaining
    lifetime at the target moment, rounded up to whole seconds.
    """
    started = time.monotonic()
    repo_list = [repos] if isinstance(repos, Repository) else list(repos)
    if not repo_list:
        raise InvalidArgument("restore needs at least one repository")
    if options.witness is not None:  # a rolled-back repository is refused before etcd is read or written
        from pitr.verify.checkpoints import require_witnessed_all

        await require_witnessed_all(repo_list, options.witness, s3_endpoint=options.witness_s3_endpoint)
    for repo in repo_list:
        await repo.sync()
    ident = await repo_list[0].require_identity()
    plan = await plan_restore(repo_list[0], options.target)
    from_etcd = ident.source == "etcd"
    source_prefix = source_prefix_of(repo_list[0], plan) if from_etcd else b""
    if source_prefix is None:
        raise InvalidArgument(f"{repo_list[0].url}: no snapshot records the etcd prefix this archive was taken "
                              "from; take one with the etcd archiver (pitr archive --source ...)")
    prefix = options.prefix if options.prefix is not None else source_prefix if from_etcd else None
    if prefix is None:
        raise InvalidArgument("this archive is of an embedded store: give the etcd prefix to restore it "
                              "under, as in etcd://HOST:PORT/PREFIX")
    scope = prefix  # what etcd holds here is replaced by the restored state
    if options.selection is not None:
        selected = options.selection.prefixes[0]
        if not selected.startswith(source_prefix):
            raise InvalidArgument(f"--prefix {selected!r} is not under the prefix the archive was taken from "
                                  f"({source_prefix!r})")
        scope = prefix + selected[len(source_prefix):]
    if options.dry_run:
        return plan
    first = await client.get_range(scope, limit=1)
    if first.count and not options.force:
        raise DestinationExists(f"etcd prefix {scope!r} at {client.endpoint} holds {first.count} keys; pass "
                                "--force (force=True) to replace them with the restored state")
    # The latest point as a time, so the build and the TTL cutoff agree even while the archive grows.
    target = RestoreTarget(time_ns=plan.cutoff_ns) if options.target.latest else options.target
    work = await anyio.to_thread.run_sync(
        lambda: tempfile.mkdtemp(prefix="pitr-etcd-restore-", dir=options.work_dir))
    try:
        built = await restore(repo_list, RestoreOptions(target=target, dest=os.path.join(work, "store"),
                                                        verify=options.verify, pause_gc=options.pause_gc,
                                                        selection=options.selection), progress=progress, say=say)
        assert not isinstance(built, RestorePlan)
        revision = await source_revision_at(repo_list[0], built.target_lsn) if from_etcd else None
        state = await anyio.to_thread.run_sync(
            lambda: StateDB(os.path.join(built.dest, "state"), readonly=True))
        try:
            writer = _Writer(client, options, plan.cutoff_ns, built.keys, progress)
            await writer.run(state, source_prefix, prefix, scope)
        finally:
            state.close()
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(lambda: shutil.rmtree(work, ignore_errors=True))
    if say is not None and writer.transactions > 1:
        say(f"the restore took {writer.transactions} etcd transactions (revisions {writer.first_revision}.."
            f"{writer.last_revision}); each is atomic, the whole is not")
    return EtcdRestoreResult(client.endpoint, prefix, built.target_lsn, built.target_ts_ns, revision, built.keys,
                             writer.written, writer.unchanged, writer.deleted, built.expired_dropped,
                             len(writer.leases), writer.transactions, writer.first_revision,
                             writer.last_revision, time.monotonic() - started)


def source_prefix_of(repo: Repository, plan: RestorePlan | None = None) -> bytes | None:
    """The etcd prefix an archive was taken from, as the etcd archiver records it in its snapshots."""
    snapshots = repo.catalog.snapshots()
    if plan is not None and plan.snapshot is not None:
        snapshots.insert(0, plan.snapshot)
    for snap in snapshots:
        encoded = snap.metadata.get("etcd_prefix")
        if isinstance(encoded, str):
            return base64.b64decode(encoded)
    return None


@dataclass(slots=True)
class _Writer:
    """The merge of the restored state with the destination, written by `concurrency` workers."""

    client: EtcdClient
    options: EtcdRestoreOptions
    cutoff_ns: int
    total: int
    progress: Progress | None
    leases: dict[int, int] = field(default_factory=dict)  # TTL seconds -> lease ID
    written: int = 0
    unchanged: int = 0
    deleted: int = 0
    transactions: int = 0
    first_revision: int | None = None
    last_revision: int | None = None

    async def run(self, state: StateDB, source_prefix: bytes, prefix: bytes, scope: bytes) -> None:
        """Merge the restored state into what etcd holds under `scope` (`prefix`, or a part of it)."""
        send, receive = anyio.create_memory_object_stream[list[_Item]](
            self.options.concurrency)
        try:
            async with anyio.create_task_group() as tg:
                for _ in range(self.options.concurrency):
                    tg.start_soon(self._work, receive.clone())
                receive.close()
                async with send:
                    await self._merge(state, source_prefix, prefix, scope, send)
        except BaseExceptionGroup as group:
            inner = _sole_failure(group)
            if inner is None:
                raise
            raise inner from group

    async def _merge(self, state: StateDB, source_prefix: bytes, prefix: bytes, scope: bytes,
                     send: anyio.abc.ObjectSendStream[list[_Item]]) -> None:
        restored = SpoolCursor(state, source_prefix)
        pending: list[_Item] = []
        chunk = self.options.max_txn_ops * self.options.concurrency

        async def emit(op: Put | Delete, ttl: int | None) -> None:
            pending.append((op, ttl))
            if len(pending) >= chunk:
                await self._send(pending, send)
                pending.clear()

        async def put_restored(entry: tuple[bytes, bytes, int | None], existing: tuple[bytes, int] | None) -> None:
            key, value, expires = entry
            ttl = None if expires is None else max(1, math.ceil((expires - self.cutoff_ns) / _NS))
            if existing is not None and ttl is None and existing == (value, 0):
                self.unchanged += 1
                return
            await emit(Put(prefix + key[len(source_prefix):], value), ttl)

        async for page in self.client.iter_range(scope, page_size=1000):
            for kv in page.kvs:
                while (entry := await restored.peek()) is not None and \
                        prefix + entry[0][len(source_prefix):] < kv.key:
                    restored.advance()
                    await put_restored(entry, None)
                if entry is not None and prefix + entry[0][len(source_prefix):] == kv.key:
                    restored.advance()
                    await put_restored(entry, (kv.value, kv.lease))
                else:
                    await emit(Delete(kv.key), None)
        while (entry := await restored.peek()) is not None:
            restored.advance()
            await put_restored(entry, None)
        await self._send(pending, send)

    async def _send(self, ops: list[_Item],
                    send: anyio.abc.ObjectSendStream[list[_Item]]) -> None:
        if not ops:
            return
        ttls = iter([ttl for _, ttl in ops])  # the batches keep the operations' order
        for batch in plan_txn_batches([op for op, _ in ops], max_ops=self.options.max_txn_ops,
                                      max_bytes=self.options.max_request_bytes):
            await send.send([(op, next(ttls)) for op in batch if not isinstance(op, Get)])

    async def _work(self, receive: anyio.abc.ObjectReceiveStream[list[_Item]]) -> None:
        async with receive:
            async for batch in receive:
                revision = await self._write(batch)
                self.transactions += 1
                self.first_revision = revision if self.first_revision is None else min(self.first_revision,
                                                                                       revision)
                self.last_revision = revision if self.last_revision is None else max(self.last_revision, revision)
                for op, _ in batch:
                    if isinstance(op, Delete):
                        self.deleted += 1
                    else:
                        self.written += 1
                if self.progress is not None:
                    self.progress("etcd", self.written + self.unchanged, self.total)

    async def _write(self, batch: list[_Item]) -> int:
        """One transaction; safe to repeat (it only sets keys to their restored values)."""
        stale: set[int] = set()
        for attempt in range(_WRITE_ATTEMPTS):
            operations: list[Put | Delete] = []
            for op, ttl in batch:
                if ttl is not None and isinstance(op, Put):
                    op = Put(op.key, op.value, await self._lease(ttl, renew=ttl in stale))
                operations.append(op)
            try:
                return await self.client.put_many(operations)
            except LeaseNotFound:  # a short lease ran out before its keys were written
                if attempt == _WRITE_ATTEMPTS - 1:
                    raise
                stale = {ttl for _, ttl in batch if ttl is not None}
            except EtcdUnavailable:
                if attempt == _WRITE_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    async def _lease(self, ttl: int, *, renew: bool) -> int:
        if renew or ttl not in self.leases:
            self.leases[ttl] = (await self.client.grant_lease(ttl)).id
        return self.leases[ttl]
