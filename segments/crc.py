"""CRC-32C (Castagnoli), the checksum of every record, frame, header and row: one import for all of them.

`crc32c(data, value=0)` has the crc32c package's calling convention: `data`
is bytes or any contiguous buffer, `value` the CRC-32C of the bytes before it
(`crc32c(b, crc32c(a)) == crc32c(a + b)`). It is the compiled function of
segments/_crc.pyx when the extension is built (the same C code as the replay's,
segments/_block_replay_c.h) and the crc32c package's otherwise. Both compute
the same function; the package stays a dependency and the reference that
tests/segments/test_crc.py compares the compiled one against. The compiled one
is preferred for start-up: `import crc32c` imports `importlib.metadata` (and
through it email, zipfile, csv, socket) to set its `__version__`, about 25 ms
of every `pitr get` and `pitr put`.
"""

from __future__ import annotations

from typing import Protocol

from segments.compiled import compiled_module


class Crc32c(Protocol):
    """The signature both implementations share."""

    def __call__(self, data: bytes | bytearray | memoryview, value: int = 0, /) -> int: ...


def _load() -> tuple[Crc32c, bool]:
    compiled = compiled_module("segments._crc", None)
    if compiled is None:
        # the reference computes the same checksums as fast; only its import is slower
        import crc32c as package

        return package.crc32c, False
    return compiled.crc32c, True


crc32c, COMPILED = _load()
