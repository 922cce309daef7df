"""Write to a store from many concurrent tasks until killed; report each acknowledged commit.

Usage: ``python load_writer.py DATA RUN WRITERS``

Prints ``ready LAST_LSN TORN`` once the store is open (after crash recovery),
then one line per acknowledged commit, written and flushed only after the
commit returned::

    LSN KEY_HEX=VALUE_HEX [KEY_HEX=VALUE_HEX ...]

Each commit puts a key no other commit uses; every third one is a batch that
also sets the writer's counter key, so later runs overwrite earlier ones. Half
the writers pause briefly between commits, so commits also arrive while a
group is being written and fsynced (and while a WAL file rolls).
"""

from __future__ import annotations

import random
import sys

import trio

from pitr.store import Store, StoreOptions


def emit(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def writer(store: Store, run: int, index: int) -> None:
    seq = 0
    rng = random.Random(index)
    while True:
        seq += 1
        if index % 2:  # paced writers commit while a group is being written, not only right after one
            await trio.sleep(rng.random() * 0.001)
        key = f"run{run:03d}-w{index:02d}-{seq:07d}".encode()
        value = f"{run}:{index}:{seq}".encode() * (1 + seq % 4)
        if seq % 3:
            commit = await store.put(key, value)
            emit(f"{commit.lsn} {key.hex()}={value.hex()}")
        else:
            counter = f"counter-w{index:02d}".encode()
            stamp = f"{run:03d}:{seq:07d}".encode()
            async with store.batch() as batch:
                batch.put(key, value)
                batch.put(counter, stamp)
            assert batch.commit is not None
            emit(f"{batch.commit.lsn} {key.hex()}={value.hex()} {counter.hex()}={stamp.hex()}")


async def main(data: str, run: int, writers: int) -> None:
    async with Store(data, StoreOptions(wal_file_size=1 << 20)) as store:
        emit(f"ready {store.last_lsn} {len(store.torn_tails)}")
        async with trio.open_nursery() as nursery:
            for index in range(writers):
                nursery.start_soon(writer, store, run, index)


if __name__ == "__main__":
    trio.run(main, sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
