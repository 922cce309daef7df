"""A writer in its own process: ``python live_writer.py DATA [APPLY_INTERVAL]``.

Opens `pitr.Store(DATA)` (the writer lock) and prints ``ready LAST_LSN``. Then,
per line read on stdin: ``put KEY VALUE [TTL]`` commits and prints ``ok LSN``;
``delete KEY`` and ``flush`` likewise;
``burst N`` commits N puts of ``k{lsn % 17}`` = ``v{lsn}`` as fast as it can and
prints ``ok LAST_LSN`` (a failure prints ``error ...``); ``quit`` (or EOF)
closes the store.
"""

from __future__ import annotations

import sys

import trio

from pitr.store import Store, StoreOptions


async def main(data: str, apply_interval: float) -> None:
    async with Store(data, StoreOptions(apply_interval=apply_interval, apply_threshold=1 << 30)) as store:
        print("ready", store.info()["last_lsn"], flush=True)
        while True:
            line = await trio.to_thread.run_sync(sys.stdin.readline)
            words = line.split()
            if not words or words[0] == "quit":
                return
            try:
                if words[0] == "put":
                    ttl = float(words[3]) if len(words) > 3 else None
                    commit = await store.put(words[1].encode(), words[2].encode(), ttl=ttl)
                    print("ok", commit.lsn, flush=True)
                elif words[0] == "delete":
                    print("ok", (await store.delete(words[1].encode())).lsn, flush=True)
                elif words[0] == "flush":
                    await store.flush()
                    print("ok", store.last_lsn, flush=True)
                elif words[0] == "burst":
                    last = 0
                    for _ in range(int(words[1])):
                        lsn = store.last_lsn + 1
                        commit = await store.put(f"k{lsn % 17}".encode(), f"v{lsn}".encode())
                        last = commit.lsn
                    print("ok", last, flush=True)
            except Exception as exc:  # noqa: BLE001 - reported to the test, which fails on it
                print("error", type(exc).__name__, exc, flush=True)


if __name__ == "__main__":
    trio.run(main, sys.argv[1], float(sys.argv[2]) if len(sys.argv) > 2 else 0.05)
