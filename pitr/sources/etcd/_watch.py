"""A watch on a key prefix as a stream of per-revision batches, resuming across members."""

from __future__ import annotations

import json
from collections import deque
from collections.abc import AsyncIterator
from types import TracebackType
from typing import TYPE_CHECKING, Self

import anyio
import httpx

from ._errors import GRPC_UNAVAILABLE, CompactedError, EtcdError, EtcdUnavailable
from ._gateway import (
    JSONObject,
    decode_event,
    decode_int,
    find_gateway_error,
    header_revision,
    key_range,
    translate_error,
)
from ._types import WatchBatch, WatchEvent

if TYPE_CHECKING:
    from ._transport import GatewayTransport

_FIRST_BACKOFF = 0.05
_MAX_BACKOFF = 1.0


class WatchStream:
    """Changes under a prefix from a start revision, one `WatchBatch` per etcd revision.

    Use it as ``async with client.watch(prefix, start) as batches`` and
    iterate; leaving the block closes the HTTP response. Every event etcd
    sends for one revision (a transaction touching several keys) arrives in
    one batch. After a connection failure the stream reopens on the next
    member from the revision after the last one it queued, so the consumer
    sees every revision exactly once; it gives up with `EtcdUnavailable`
    after the client's ``retry_timeout`` without any member answering.
    """

    def __init__(self, transport: GatewayTransport, prefix: bytes, start_revision: int, *,
                 progress_notify: bool, idle_timeout: float | None) -> None:
        self._transport = transport
        self._prefix = prefix
        self._progress_notify = progress_notify
        self._idle_timeout = idle_timeout
        #: Where the stream resumes after a reconnection: one past the last revision queued.
        self._resume_revision = start_revision
        self._pending: deque[WatchBatch] = deque()
        self._response: httpx.Response | None = None
        self._lines: AsyncIterator[str] | None = None
        self._endpoint: str | None = None
        self._failing_since: float | None = None
        self._backoff = _FIRST_BACKOFF
        self._interrupted = False
        self._closed = False

    @property
    def endpoint(self) -> str | None:
        """The member currently serving the watch."""
        return self._endpoint

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        traceback: TracebackType | None) -> None:
        await self.aclose()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> WatchBatch:
        if self._closed:
            raise StopAsyncIteration
        while not self._pending:
            if self._interrupted:
                # A read was cancelled half-way: the response is unusable, the member is fine.
                self._interrupted = False
                await self._disconnect(lines_finished=True)
            if self._lines is None:
                await self._connect()
            assert self._lines is not None
            try:
                line = await self._lines.__anext__()
            except StopAsyncIteration:
                await self._reconnect_after(None, lines_finished=True)
                continue
            except httpx.TransportError as exc:  # includes the idle (read) timeout
                await self._reconnect_after(exc, lines_finished=True)
                continue
            except BaseException:
                self._interrupted = True
                raise
            if line.strip():
                await self._handle_message(line)
        return self._pending.popleft()

    async def aclose(self) -> None:
        """Close the stream; iterating afterwards ends at once."""
        self._closed = True
        self._pending.clear()
        await self._disconnect(lines_finished=False)

    async def _connect(self) -> None:
        body: JSONObject = {"create_request": {
            **key_range(self._prefix, prefix=True),
            "start_revision": str(self._resume_revision),
            "progress_notify": self._progress_notify,
        }}
        response, endpoint = await self._transport.open_stream("/v3/watch", body, what="watch",
                                                             idle_timeout=self._idle_timeout)
        self._response, self._endpoint = response, endpoint
        self._lines = response.aiter_lines()

    async def _disconnect(self, *, lines_finished: bool) -> None:
        response, lines = self._response, self._lines
        self._response = self._lines = None
        if response is None:
            return
        with anyio.CancelScope(shield=True):
            await response.aclose()
            if lines is not None and not lines_finished:
                await _drain_closed(lines)

    async def _reconnect_after(self, cause: Exception | None, *, lines_finished: bool) -> None:
        """Drop the current member's stream and wait before the next `_connect`, or give up."""
        endpoint = self._endpoint
        await self._disconnect(lines_finished=lines_finished)
        if endpoint is not None:
            self._transport.mark_failed(endpoint)
        now = anyio.current_time()
        if self._failing_since is None:
            self._failing_since = now
        elif now - self._failing_since > self._transport.retry_timeout:
            reason = repr(cause) if cause is not None else "the stream ended"
            raise EtcdUnavailable(f"{endpoint}: watch of {self._prefix!r} broke ({reason}) and no member "
                                  f"resumed it within {self._transport.retry_timeout} s", endpoint=endpoint) from cause
        await anyio.sleep(self._backoff)
        self._backoff = min(self._backoff * 2, _MAX_BACKOFF)

    async def _handle_message(self, line: str) -> None:
        endpoint = self._endpoint or "etcd"
        try:
            message = json.loads(line)
        except ValueError as exc:
            raise EtcdError(f"{endpoint}: watch sent invalid JSON: {line[:200]}", endpoint=endpoint) from exc
        error = find_gateway_error(message)
        if error is not None:
            translated = translate_error(error, endpoint=endpoint, what="watch", revision=self._resume_revision)
            if error.code != GRPC_UNAVAILABLE:
                raise translated
            await self._reconnect_after(translated, lines_finished=False)
            return
        result = message.get("result")
        if not isinstance(result, dict):
            raise EtcdError(f"{endpoint}: watch sent a message without a result: {line[:200]}", endpoint=endpoint)
        self._failing_since = None
        self._backoff = _FIRST_BACKOFF
        if result.get("canceled"):
            compact_revision = decode_int(result, "compact_revision")
            if compact_revision > 0:
                raise CompactedError(compact_revision, endpoint=endpoint, requested_revision=self._resume_revision)
            reason = result.get("cancel_reason") or "no reason given"
            raise EtcdError(f"{endpoint}: etcd canceled the watch of {self._prefix!r}: {reason}",
                            endpoint=endpoint)
        events = [decode_event(e) for e in result.get("events") or ()]
        if events:
            self._queue_events(events, endpoint)
        elif not result.get("created"):
            # A progress notification: etcd sends it only to a watcher that has caught up,
            # so every event at or below this revision has been delivered. It is passed on
            # even when the revision has not moved: it tells the consumer that nothing
            # happened between the last batch and now.
            revision = header_revision(result)
            if revision >= self._resume_revision - 1:
                self._pending.append(WatchBatch(revision=revision))
                self._resume_revision = revision + 1

    def _queue_events(self, events: list[WatchEvent], endpoint: str) -> None:
        """Group one response's events into batches by revision (etcd never splits a revision
        across responses unless asked to fragment, which this client does not)."""
        group: list[WatchEvent] = []
        for event in events:
            if group and event.mod_revision != group[0].mod_revision:
                self._queue_batch(group, endpoint)
                group = []
            group.append(event)
        self._queue_batch(group, endpoint)

    def _queue_batch(self, group: list[WatchEvent], endpoint: str) -> None:
        revision = group[0].mod_revision
        if revision < self._resume_revision:
            raise EtcdError(f"{endpoint}: watch sent revision {revision} after it was expected to start at "
                            f"{self._resume_revision} (events out of order)", endpoint=endpoint)
        self._pending.append(WatchBatch(revision=revision, events=tuple(group)))
        self._resume_revision = revision + 1


async def _drain_closed(lines: AsyncIterator[str]) -> None:
    """Run a closed response's line iterator to its end.

    httpx reads a body through a chain of async generators. Abandoning them
    half-way leaves them to the garbage collector, which trio reports as a
    ResourceWarning; after the response is closed, the next read fails at
    the bottom of the chain and the error finishes every generator in it.
    """
    for _ in range(10_000):  # bounded: only lines already decoded can come before the failure
        try:
            await lines.__anext__()
        except StopAsyncIteration:
            return
        except Exception:  # the expected read error on the closed stream: the chain is finished
            return

