"""`--heartbeat-url URL`: a dead-man switch on the recovery point, not on the process.

The URL is requested (HTTP GET, with httpx, imported only here) when the
known-complete time of every repository has advanced since the last call, at
most once per `every` seconds. An archiver that runs but cannot publish (a
full repository, a store that stopped writing its checkpoint) stops calling
it, and the monitoring service raises the alarm. A failed call is logged and
counted; the next advance tries again.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import anyio
import httpx

from pitr.archiver.observe import ArchiveObserver
from pitr.errors import InvalidArgument

log = logging.getLogger("pitr.status")


class Heartbeat(ArchiveObserver):
    """Calls `url` when every repository's known-complete time advanced since the last call."""

    def __init__(self, url: str, repos: Iterable[str], *, every: float = 30.0, timeout: float = 10.0) -> None:
        if not url.startswith(("http://", "https://")):
            raise InvalidArgument(f"--heartbeat-url {url!r}: give an http:// or https:// URL")
        self.url = url
        self.every = every
        self.timeout = timeout
        self._pending = set(repos)  # repositories whose known-complete time has not advanced since the last call
        self._all = frozenset(self._pending)
        self._advanced = anyio.Event()
        self.calls = 0
        self.failures = 0

    def watermark_written(self, repo: str, lsn: int, complete_through_ns: int) -> None:
        self._pending.discard(repo)
        if not self._pending:
            self._advanced.set()

    async def _call(self, client: httpx.AsyncClient) -> None:
        try:
            response = await client.get(self.url)
            response.raise_for_status()
        except httpx.HTTPError as exc:
            self.failures += 1
            log.warning("heartbeat %s failed: %s", self.url, exc)
            return
        self.calls += 1

    async def serve(self) -> None:
        """Call the URL after each advance, at most every `every` seconds, until cancelled."""
        async with httpx.AsyncClient(timeout=self.timeout) as client:
            while True:
                await self._advanced.wait()
                self._advanced = anyio.Event()
                self._pending = set(self._all)
                await self._call(client)
                await anyio.sleep(self.every)
