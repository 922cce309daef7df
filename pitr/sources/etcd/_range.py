"""Paginated range reads that keep one revision across pages."""

from __future__ import annotations

from typing import TYPE_CHECKING, Self

from ._types import RangePage

if TYPE_CHECKING:
    from .client import EtcdClient


class RangeReader:
    """The pages of every key under a prefix, all read at the revision of the first page.

    An async iterator, not an async generator, so breaking out of the loop
    early leaves nothing to finalize.
    """

    def __init__(self, client: EtcdClient, prefix: bytes, *, revision: int | None, page_size: int) -> None:
        self._client = client
        self._prefix = prefix
        self._page_size = page_size
        self._next_key: bytes | None = prefix
        #: The revision every page is read at: given, or fixed by the first page.
        self.revision = revision

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> RangePage:
        if self._next_key is None:
            raise StopAsyncIteration
        page = await self._client.get_range(self._prefix, revision=self.revision, limit=self._page_size,
                                            start_key=self._next_key)
        self.revision = page.revision
        self._next_key = page.next_key
        return page
