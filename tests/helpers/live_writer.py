"""A writer in its own process: ``python live_writer.py DATA [COUNT]``.

Opens `pitr.Store(DATA)` (the writer lock) and prints ``ready PID``. Then,
per line read on stdin: ``put KEY VALUE`` commits and prints ``ok LSN``;
``burst N`` commits N puts of ``k{i % 17}`` = ``v{lsn}`` as fast as it can and
prints ``ok LAST_LSN`` (a failure prints ``error ...``); ``quit`` (or EOF)
closes the store.
"""

from __future__ import annotations

import sys

import trio

from pitr.store import Store


async def main(data: str) -> None:
    async with Store(data, apply_interval=0.05) as store:
        print("ready", store.info()["last_lsn"], flush=True)
        while True:
            line = await trio.to_thread.run_sync(sys.stdin.readline)
            words = line.split()
            if not words or words[0] == "quit":
                return
            try:
                if words[0] == "put":
                    commit = await store.put(words[1].encode(), words[2].encode())
                    print("ok", commit.lsn, flush=True)
                elif words[0] == "burst":
                    last = 0
                    for i in range(int(words[1])):
                        commit = await store.put(f"k{i % 17}".encode(), f"v{store.last_lsn + 1}".encode())
                        last = commit.lsn
                    print("ok", last, flush=True)
            except Exception as exc:  # noqa: BLE001 - reported to the test, which fails on it
                print("error", type(exc).__name__, exc, flush=True)


if __name__ == "__main__":
    trio.run(main, sys.argv[1])
