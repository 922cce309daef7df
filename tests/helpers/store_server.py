"""A store in its own process, driven by JSON lines on stdin, so a test can SIGKILL it.

Usage: ``python store_server.py DATA REPO CLOCK_NS [WAL_FILE_SIZE]`` (REPO ``-``: no archiver),
or ``python store_server.py --zygote FD``: a process that has imported everything
once and forks a server per request on the Unix socket FD (see `zygote`), so a
test that starts hundreds of servers does not pay the interpreter and import
start-up (about a second) for each.

The store runs with a fake clock (set by the `clock` command), no periodic
apply (so a crash leaves WAL records that recovery must replay) and an
in-process archiver shipping to REPO. Each request is one JSON object per
line; each reply is one line: ``{"ok": result}`` or ``{"error": class name,
"message": text}``. Bytes travel as hex strings. The first line written is
``{"ready": info}`` once the store is open (after crash recovery).

Restores run here, under the archiver's cycle lock, so that a merge never
removes a file between the repository listing and the read.
"""

from __future__ import annotations

import array
import json
import os
import signal
import socket
import sys
from contextlib import AsyncExitStack
from typing import Any

import anyio
import trio

from pitr.archiver import ArchiveOptions, Archiver
from pitr.archiving import archiving
from pitr.datadir.state import StateDB
from pitr.repo.repository import Repository, open_repository
from pitr.restore import RestoreOptions, RestoreTarget, restore
from pitr.restore.engine import RestoreResult
from pitr.retention import plan_cleanup, run_cleanup
from pitr.snapshots.take import take_snapshot
from pitr.store import Store, StoreOptions
from segments.record import DELETE, PUT, Op


class FakeClock:
    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


def h(data: bytes | None) -> str | None:
    return None if data is None else data.hex()


def b(text: str | None) -> bytes | None:
    return None if text is None else bytes.fromhex(text)


def reply(doc: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(doc) + "\n")
    sys.stdout.flush()


def read_state(dest: str) -> dict[str, Any]:
    """Everything a restored directory holds: identity, checkpoint and raw entries with expiries."""
    state = StateDB(os.path.join(dest, "state"), readonly=True)
    try:
        ident = state.identity()
        assert ident is not None
        lsn, ts = state.checkpoint()
        entries = [[h(k), h(v), e] for k, v, e in state.iter_range(b"", None)]
    finally:
        state.close()
    return {"store_id": str(ident.store_id), "first_lsn": ident.first_lsn, "parent": ident.parent,
            "applied_lsn": lsn, "applied_ts_ns": ts, "entries": entries,
            "files": sorted(os.listdir(dest))}


class Server:
    def __init__(self, store: Store, repo: Repository | None, archiver: Archiver | None,
                 clock: FakeClock) -> None:
        self.store = store
        self.repo = repo
        self.archiver = archiver
        self.clock = clock

    @staticmethod
    def commit_doc(commit: Any) -> dict[str, int] | None:
        return None if commit is None else {"lsn": commit.lsn, "ts": commit.ts_ns}

    async def handle(self, req: dict[str, Any]) -> Any:
        op = req["op"]
        store = self.store
        if op == "clock":
            self.clock.now = req["ns"]
            return None
        if op == "put":
            return self.commit_doc(await store.put(b(req["key"]), b(req["value"]), ttl=req.get("ttl")))
        if op == "delete":
            return self.commit_doc(await store.delete(b(req["key"])))
        if op == "cas":
            return self.commit_doc(await store.compare_and_set(
                b(req["key"]), b(req["expected"]), b(req["new"]), ttl=req.get("ttl")))
        if op in ("batch", "batch_abort"):
            try:
                async with store.batch() as batch:
                    for kind, key, value, ttl in req["ops"]:
                        if kind == "put":
                            batch.put(b(key), b(value), ttl=ttl)
                        else:
                            batch.delete(b(key))
                    if op == "batch_abort":
                        raise KeyError("abandon the batch")
            except KeyError:
                return {"last_lsn": store.last_lsn}
            return self.commit_doc(batch.commit)
        if op == "commit":
            ops = [Op(PUT, b(k), b(v), e) if kind == "put" else Op(DELETE, b(k))
                   for kind, k, v, e in req["ops"]]
            return self.commit_doc(await store.commit(ops, ts_ns=req["ts_ns"]))
        if op == "state":
            scan = await store.scan()
            got = {}
            for key in req["keys"]:
                found = await store.get_with_expiry(b(key))
                got[key] = None if found is None else [h(found[0]), found[1]]
            return {"scan": [[h(k), h(v)] for k, v in scan], "got": got, "last_lsn": store.last_lsn,
                    "durable_lsn": store.durable_lsn}
        if op == "scan":
            rows = await store.scan(b(req["prefix"]), start=b(req["start"]), end=b(req["end"]),
                                    limit=req["limit"])
            return [[h(k), h(v)] for k, v in rows]
        if op == "flush":
            await store.flush()
            return None
        if op in ("archive", "snapshot", "restore", "cleanup"):
            return await self.handle_archive(op, req)
        if op == "info":
            return self.info()
        raise ValueError(f"unknown request {op!r}")

    async def handle_archive(self, op: str, req: dict[str, Any]) -> Any:
        assert self.archiver is not None, "started without a repository"
        assert self.repo is not None
        if op == "archive":
            await self.archiver.cycle()
            return {"watermark": self.repo.watermark(),
                    "segments": [[s.first_lsn, s.last_lsn] for s in self.repo.catalog.segments()]}
        if op == "snapshot":
            entry = await take_snapshot(self.archiver, prepare=self.store.flush)
            return {"lsn": entry.lsn, "ts": entry.ts_ns, "name": entry.name}
        if op == "cleanup":
            async with self.archiver.cycle_lock:
                plan = await plan_cleanup(self.repo, req["keep_count"], 0, self.store.now())
                await run_cleanup(self.repo, plan)
            return {"kept": [s.lsn for s in plan.keep_snapshots],
                    "deleted_segments": [[s.first_lsn, s.last_lsn] for s in plan.delete_segments],
                    "windows": [[w.start_lsn, w.end_lsn] for w in plan.windows_after],
                    "segments": [[s.first_lsn, s.last_lsn] for s in self.repo.catalog.segments()]}
        await self.archiver.cycle()  # restore
        target = RestoreTarget(**req["target"])
        async with self.archiver.cycle_lock:
            result = await restore(self.repo, RestoreOptions(target=target, dest=req["dest"],
                                                             force=req.get("force", False)))
        assert isinstance(result, RestoreResult)
        return {"target_lsn": result.target_lsn, "target_ts": result.target_ts_ns,
                    "base_lsn": result.base_lsn, "result_store_id": str(result.store_id),
                **read_state(req["dest"])}

    def info(self) -> dict[str, Any]:
        ident = self.store.identity
        assert ident is not None
        return {"pid": os.getpid(), "store_id": str(ident.store_id), "last_lsn": self.store.last_lsn,
                "torn": len(self.store.torn_tails), "wal_files": len(self.store.wal_directory.files())}


async def serve(data: str, repo_url: str, clock_ns: int, wal_file_size: int) -> None:
    clock = FakeClock(clock_ns)
    options = ArchiveOptions(interval=0.02, watermark_interval=0.0, merge_count=4,
                             merge_small_bytes=1 << 20)
    async with AsyncExitStack() as stack:
        store = await stack.enter_async_context(
            Store(data, StoreOptions(wal_file_size=wal_file_size, apply_interval=3600.0), clock=clock))
        repo = archiver = None
        if repo_url != "-":
            repo = await stack.enter_async_context(open_repository(repo_url, create=True))
            archiver = await stack.enter_async_context(archiving(store, repo, options=options))
        server = Server(store, repo, archiver, clock)
        reply({"ready": server.info()})
        while True:
            line = await anyio.to_thread.run_sync(sys.stdin.readline)
            if not line:
                break
            try:
                reply({"ok": await server.handle(json.loads(line))})
            except Exception as exc:  # noqa: BLE001 - every failure goes back to the test
                doc: dict[str, Any] = {"error": type(exc).__name__, "message": str(exc)}
                windows = getattr(exc, "windows", None)
                if windows is not None:
                    doc["windows"] = [[w.start_ns, w.end_ns, w.start_lsn, w.end_lsn] for w in windows]
                reply(doc)
    reply({"closed": True})  # everything closed cleanly: the last line before a normal exit


def zygote(fd: int) -> None:
    """Fork a server for each request on the socket: a JSON line with the server's arguments,
    sent with three file descriptors (its stdin, stdout and stderr). Replies with the child's pid.

    Children are reaped by the kernel (SIGCHLD ignored), so a pid that no longer exists is a
    server that is gone, its files closed and its store lock released. End of the socket ends
    the zygote. Nothing here may start a thread or an event loop before forking.
    """
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    control = socket.socket(fileno=fd)
    while True:
        fds = array.array("i")
        message, ancdata, _flags, _addr = control.recvmsg(4096, socket.CMSG_LEN(3 * fds.itemsize))
        if not message:
            return
        for level, kind, data in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(data[: len(data) - len(data) % fds.itemsize])
        args = json.loads(message)
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                control.close()
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                for target, source in enumerate(fds):
                    os.dup2(source, target)
                    os.close(source)
                sys.stdin = open(0, encoding="utf-8", closefd=False)  # noqa: SIM115 - the process's own
                sys.stdout = open(1, "w", encoding="utf-8", closefd=False)  # noqa: SIM115
                sys.stderr = open(2, "w", encoding="utf-8", closefd=False)  # noqa: SIM115
                run(args)
                code = 0
            except BaseException:  # noqa: BLE001 - reported on the server's stderr, like a crash
                import traceback

                traceback.print_exc()
            finally:
                for stream in (sys.stdout, sys.stderr):
                    try:
                        stream.flush()
                    except OSError:
                        pass  # the test closed its end
                os._exit(code)  # never back into the zygote's loop
        for source in fds:
            os.close(source)
        control.sendall(b"%d\n" % pid)


def run(argv: list[str]) -> None:
    data, repo, clock_ns = argv[0], argv[1], int(argv[2])
    wal_file_size = int(argv[3]) if len(argv) > 3 else 4096
    trio.run(serve, data, repo, clock_ns, wal_file_size)


def main() -> None:
    if sys.argv[1] == "--zygote":
        zygote(int(sys.argv[2]))
    else:
        run(sys.argv[1:])


if __name__ == "__main__":
    main()
