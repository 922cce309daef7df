"""The storage contract every backend must meet (pitr.storage.base.Storage).

Each test in the first part runs once per backend through the `storage`
fixture; the second part covers what only a remote backend has: retries of
transient failures, request counting, conditional puts and URL handling.
"""

from __future__ import annotations

import os
import random
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest

import pitr.storage
from pitr.errors import InvalidArgument, ObjectExists, ObjectNotFound, StorageError
from pitr.storage import LocalStorage, ObjectInfo, S3Storage, Storage, open_storage
from pitr.storage.base import DOWNLOAD_CHUNK
from pitr.storage.s3 import RetryPolicy
from tests.servers.s3 import FaultProxy, S3Server
from tests.storage.conftest import LIST_PAGE_SIZE, MULTIPART_THRESHOLD, PART_SIZE

pytestmark = pytest.mark.anyio

INVALID_NAMES = ["", "/abs", "a//b", "../x", "a/../b", "a/./b", "trailing/", "sp ace", "back\\slash", "."]


def payload(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


# -- download ------------------------------------------------------------------------------------


async def test_download_streams_the_object_into_a_file(storage: Storage, tmp_path: Path) -> None:
    """The whole object lands in the file, and memory stays near one chunk, not the object's size."""
    data = payload(12 << 20, seed=7)
    await storage.publish("segments/big.seg", data)
    target = tmp_path / "download"
    target.write_bytes(b"x" * (20 << 20))  # a previous, longer content is truncated
    tracemalloc.start()
    try:
        size = await storage.download("segments/big.seg", str(target))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert size == len(data)
    assert target.read_bytes() == data
    assert peak < 4 * DOWNLOAD_CHUNK, f"downloading {len(data)} bytes allocated {peak} at peak"


async def test_download_of_a_missing_object(storage: Storage, tmp_path: Path) -> None:
    with pytest.raises(ObjectNotFound, match="segments/none.seg"):
        await storage.download("segments/none.seg", str(tmp_path / "download"))


# -- publish -------------------------------------------------------------------------------------


async def test_publish_then_read_and_stat(storage: Storage) -> None:
    await storage.publish("segments/a.seg", b"hello world")
    assert await storage.read("segments/a.seg") == b"hello world"
    assert await storage.stat("segments/a.seg") == ObjectInfo("segments/a.seg", 11)


async def test_publish_empty_object(storage: Storage) -> None:
    await storage.publish("empty", b"")
    assert await storage.read("empty") == b""
    assert await storage.read("empty", 0, 10) == b""
    assert await storage.stat("empty") == ObjectInfo("empty", 0)


async def test_publish_existing_raises_and_keeps_original(storage: Storage) -> None:
    await storage.publish("catalog/x", b"original")
    with pytest.raises(ObjectExists, match="catalog/x"):
        await storage.publish("catalog/x", b"impostor")
    assert await storage.read("catalog/x") == b"original"


async def test_concurrent_reader_never_sees_partial_object(storage: Storage) -> None:
    data = payload(4 << 20, seed=1)
    seen: list[int] = []

    async def watch(done: anyio.Event) -> None:
        while not done.is_set():
            try:
                got = await storage.read("big")
            except ObjectNotFound:
                got = None
            info = await storage.stat("big")
            assert got is None or got == data, f"reader saw {len(got)} of {len(data)} bytes"
            assert info is None or info.size == len(data)
            seen.append(0 if got is None else len(got))

    done = anyio.Event()
    async with anyio.create_task_group() as group:
        group.start_soon(watch, done)
        await storage.publish("big", data)
        done.set()
    assert await storage.read("big") == data
    assert seen  # the reader ran while the object was being published


async def test_publish_file_small(storage: Storage, tmp_path: Path) -> None:
    source = tmp_path / "small.bin"
    source.write_bytes(b"x" * 1000)
    await storage.publish_file("files/small", str(source))
    assert await storage.read("files/small") == b"x" * 1000


async def test_publish_file_multipart_sized(storage: Storage, tmp_path: Path) -> None:
    data = payload(MULTIPART_THRESHOLD + 2 * PART_SIZE + 123, seed=2)
    source = tmp_path / "large.bin"
    source.write_bytes(data)
    await storage.publish_file("files/large", str(source))
    assert await storage.read("files/large") == data
    assert await storage.stat("files/large") == ObjectInfo("files/large", len(data))
    if isinstance(storage, S3Storage):
        assert storage.requests["UploadPart"] == -(-len(data) // PART_SIZE)
        assert storage.requests["CompleteMultipartUpload"] == 1


async def test_publish_file_existing_raises_and_keeps_original(storage: Storage, tmp_path: Path) -> None:
    source = tmp_path / "large.bin"
    source.write_bytes(payload(MULTIPART_THRESHOLD + 1, seed=3))
    await storage.publish("files/taken", b"original")
    with pytest.raises(ObjectExists):
        await storage.publish_file("files/taken", str(source))
    assert await storage.read("files/taken") == b"original"


async def test_publish_file_missing_source(storage: Storage, tmp_path: Path) -> None:
    with pytest.raises(StorageError):
        await storage.publish_file("files/none", str(tmp_path / "absent.bin"))
    assert await storage.stat("files/none") is None


async def test_replace(storage: Storage) -> None:
    await storage.replace("meta/head", b"one")
    assert await storage.read("meta/head") == b"one"
    await storage.replace("meta/head", b"two, longer")
    assert await storage.read("meta/head") == b"two, longer"
    assert await storage.stat("meta/head") == ObjectInfo("meta/head", 11)
    with pytest.raises(ObjectExists):
        await storage.publish("meta/head", b"three")


# -- read ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("offset", "length", "expected"), [
    (0, None, b"0123456789"),
    (3, None, b"3456789"),
    (3, 4, b"3456"),
    (0, 1, b"0"),
    (9, None, b"9"),
    (8, 10, b"89"),
    (5, 0, b""),
    (10, None, b""),
    (12, 3, b""),
])
async def test_range_reads(storage: Storage, offset: int, length: int | None, expected: bytes) -> None:
    await storage.publish("ranged", b"0123456789")
    assert await storage.read("ranged", offset, length) == expected


async def test_missing_objects(storage: Storage) -> None:
    assert await storage.stat("nothing/here") is None
    with pytest.raises(ObjectNotFound, match="nothing/here"):
        await storage.read("nothing/here")
    with pytest.raises(ObjectNotFound):
        await storage.read("nothing/here", 5, 10)
    with pytest.raises(ObjectNotFound):
        await storage.read("nothing/here", 0, 0)


# -- list ----------------------------------------------------------------------------------------


async def publish_many(storage: Storage, count: int) -> list[str]:
    names = [f"many/o{i:03d}" for i in range(count)]
    shuffled = names[:]
    random.Random(4).shuffle(shuffled)
    for name in shuffled:
        await storage.publish(name, name.encode())
    return names


async def test_list_order_and_pagination(storage: Storage) -> None:
    names = await publish_many(storage, 25)
    assert await storage.list("many/") == [ObjectInfo(name, len(name)) for name in names]
    if isinstance(storage, S3Storage):
        assert storage.requests["ListObjectsV2"] == -(-25 // LIST_PAGE_SIZE)


@pytest.mark.parametrize(("after", "first", "count"), [
    (None, 0, 25), ("many/o012", 13, 12), ("many/o0125", 13, 12), ("a", 0, 25), ("many/", 0, 25),
    ("many/o024", 25, 0), ("z", 25, 0),
])
async def test_list_after(storage: Storage, after: str | None, first: int, count: int) -> None:
    names = await publish_many(storage, 25)
    listed = await storage.list("many/", after=after)
    assert [info.name for info in listed] == names[first:first + count]


async def test_list_name_prefix(storage: Storage) -> None:
    names = await publish_many(storage, 25)
    assert [info.name for info in await storage.list("many/o01")] == names[10:20]
    assert [info.name for info in await storage.list("many/o01", after="many/o015")] == names[16:20]
    assert await storage.list("many/x") == []
    assert await storage.list("absent/") == []


async def test_list_does_not_descend(storage: Storage) -> None:
    for name in ("top", "d/a", "d/b", "d/sub/c", "d/sub/deeper/e", "dz/f"):
        await storage.publish(name, b"x")
    assert [info.name for info in await storage.list("")] == ["top"]
    assert [info.name for info in await storage.list("d/")] == ["d/a", "d/b"]
    assert [info.name for info in await storage.list("d/sub/")] == ["d/sub/c"]
    assert [info.name for info in await storage.list("d")] == []


# -- delete and names ----------------------------------------------------------------------------


async def test_delete(storage: Storage) -> None:
    await storage.publish("doomed", b"x")
    await storage.delete("doomed")
    assert await storage.stat("doomed") is None
    with pytest.raises(ObjectNotFound):
        await storage.read("doomed")
    assert await storage.list("") == []
    await storage.delete("doomed")  # already gone: fine
    await storage.delete("never/was")
    await storage.publish("doomed", b"again")  # a deleted name can be published anew
    assert await storage.read("doomed") == b"again"


@pytest.mark.parametrize("name", INVALID_NAMES)
async def test_invalid_names_rejected(storage: Storage, name: str, tmp_path: Path) -> None:
    source = tmp_path / "f"
    source.write_bytes(b"x")
    with pytest.raises(InvalidArgument):
        await storage.publish(name, b"x")
    with pytest.raises(InvalidArgument):
        await storage.publish_file(name, str(source))
    with pytest.raises(InvalidArgument):
        await storage.replace(name, b"x")
    with pytest.raises(InvalidArgument):
        await storage.read(name)
    with pytest.raises(InvalidArgument):
        await storage.stat(name)
    with pytest.raises(InvalidArgument):
        await storage.delete(name)


# -- S3 only: retries, request economy, conditional put ------------------------------------------


async def test_s3_retries_while_server_restarts(s3_server: S3Server, make_s3_storage: Callable[..., S3Storage],
                                                tmp_path: Path) -> None:
    # A server of its own: stopping the shared one would disturb other tests.
    server = S3Server(s3_server.binary, str(tmp_path))
    server.start()
    storage = make_s3_storage(f"s3://{server.bucket}/restart", endpoint_url=server.endpoint,
                              retry=RetryPolicy(attempts=12, base_delay=0.05, max_delay=0.3))
    try:
        await storage.publish("before", b"1")
        server.stop()
        with anyio.fail_after(8):
            async with anyio.create_task_group() as group:
                group.start_soon(storage.publish, "during", b"2")
                await anyio.sleep(0.3)  # let a few attempts hit the closed port
                await anyio.to_thread.run_sync(server.start)
        assert await storage.read("during") == b"2"
        assert sum(storage.retries.values()) >= 1
    finally:
        await storage.aclose()
        server.stop()


async def test_s3_retries_throttling_and_dropped_connections(
        s3_server: S3Server, make_s3_storage: Callable[..., S3Storage]) -> None:
    with FaultProxy(s3_server.port) as proxy:
        storage = make_s3_storage(endpoint_url=proxy.endpoint, conditional_put=False)
        try:
            proxy.fail_next("503", "drop", "500")
            await storage.publish("a", b"payload")  # HEAD fails 3 times, then HEAD and PUT go through
            assert proxy.pending_faults() == 0
            assert storage.requests["HeadObject"] == 4
            assert storage.requests["PutObject"] == 1
            assert storage.retries["publish"] == 3
            proxy.fail_next("503")
            assert await storage.read("a", 2, 3) == b"ylo"
            assert storage.requests["GetObject"] == 2
        finally:
            await storage.aclose()


async def test_s3_gives_up_after_bounded_attempts(s3_server: S3Server,
                                                  make_s3_storage: Callable[..., S3Storage]) -> None:
    with FaultProxy(s3_server.port) as proxy:
        storage = make_s3_storage(endpoint_url=proxy.endpoint, retry=RetryPolicy(attempts=3, base_delay=0.01))
        try:
            proxy.fail_next("503", "503", "503", "503")
            with pytest.raises(StorageError, match="after 3 attempts"):
                await storage.stat("a")
            assert storage.requests["HeadObject"] == 3
        finally:
            await storage.aclose()


async def test_s3_lost_response_to_publish_is_not_reported_as_exists(
        s3_server: S3Server, make_s3_storage: Callable[..., S3Storage], tmp_path: Path) -> None:
    # The PUT lands but its answer is lost; the retry must recognise its own object by ETag.
    with FaultProxy(s3_server.port) as proxy:
        storage = make_s3_storage(endpoint_url=proxy.endpoint, conditional_put=False)
        try:
            proxy.fail_next("pass", "lose-response")  # the HEAD passes, the PUT's answer is lost
            await storage.publish("once", b"exactly once")
            assert await storage.read("once") == b"exactly once"
            assert storage.retries["publish"] == 1
            source = tmp_path / "large.bin"
            data = payload(MULTIPART_THRESHOLD + 1, seed=5)
            source.write_bytes(data)
            # HEAD, CreateMultipartUpload and the 3 parts pass; the completion's answer is lost.
            proxy.fail_next("pass", "pass", "pass", "pass", "pass", "lose-response")
            await storage.publish_file("large", str(source))
            assert await storage.read("large") == data
            assert storage.retries["complete"] == 1
            assert proxy.pending_faults() == 0
        finally:
            await storage.aclose()


async def test_s3_detects_ignored_conditional_put(make_s3_storage: Callable[..., S3Storage]) -> None:
    storage = make_s3_storage()  # rclone accepts If-None-Match on PUT but ignores it
    try:
        assert storage.conditional_put is None
        await storage.publish("a", b"1")
        assert storage.conditional_put is False
        assert await storage.list("") == [ObjectInfo("a", 1)]  # the probe object is gone or hidden
        with pytest.raises(ObjectExists):
            await storage.publish("a", b"2")
    finally:
        await storage.aclose()


async def test_s3_request_counts(make_s3_storage: Callable[..., S3Storage]) -> None:
    storage = make_s3_storage(conditional_put=False)
    try:
        await storage.publish("a", b"1")
        await storage.read("a")
        await storage.stat("a")
        await storage.list("")
        await storage.delete("a")
        # HEADs: the unconditional publish's, stat's, and delete's (for the version to delete in a versioned,
        # Object Lock bucket, where a plain DELETE would only add a delete marker and free nothing)
        assert dict(storage.requests) == {"HeadObject": 3, "PutObject": 1, "GetObject": 1,
                                          "ListObjectsV2": 1, "DeleteObject": 1}
        assert not storage.retries
    finally:
        await storage.aclose()


async def test_s3_closed_storage_refuses(make_s3_storage: Callable[..., S3Storage]) -> None:
    storage = make_s3_storage()
    await storage.aclose()
    with pytest.raises(StorageError, match="closed"):
        await storage.stat("a")


async def test_s3_missing_bucket(s3_server: S3Server, make_s3_storage: Callable[..., S3Storage]) -> None:
    storage = make_s3_storage("s3://no-such-bucket/x")
    try:
        with pytest.raises(StorageError, match="no-such-bucket"):
            await storage.list("")
    finally:
        await storage.aclose()


# -- open_storage --------------------------------------------------------------------------------


async def test_open_storage_local(tmp_path: Path) -> None:
    for url in (str(tmp_path / "a"), f"file://{tmp_path / 'b'}"):
        os.makedirs(url.removeprefix("file://"))
        storage = open_storage(url)
        assert isinstance(storage, LocalStorage)
        await storage.publish("x", b"1")
        await storage.aclose()
    assert (tmp_path / "a" / "x").exists()
    assert (tmp_path / "b" / "x").exists()


async def test_open_storage_s3(s3_server: S3Server, aws_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    storage = open_storage(f"s3://{s3_server.bucket}/opened/", s3_endpoint=s3_server.endpoint)
    assert isinstance(storage, S3Storage)
    assert storage.url == f"s3://{s3_server.bucket}/opened"
    await storage.replace("x", b"1")
    await storage.aclose()
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server.endpoint)  # honoured without s3_endpoint
    storage = open_storage(f"s3://{s3_server.bucket}/opened")
    assert await storage.read("x") == b"1"
    await storage.aclose()


@pytest.mark.parametrize("url", ["gs://bucket/prefix", "http://example/x", "", "s3://", "s3:///prefix",
                                 "s3://bucket/../x", "file://"])
def test_open_storage_rejects(url: str) -> None:
    with pytest.raises(InvalidArgument, match="URL|bucket|name|directory"):
        open_storage(url)


def test_open_storage_names_unknown_url() -> None:
    with pytest.raises(InvalidArgument, match="gs://bucket/p"):
        open_storage("gs://bucket/p")


def test_exports() -> None:
    assert sorted(pitr.storage.__all__) == ["LocalStorage", "ObjectInfo", "ObjectLock", "S3Storage", "Storage",
                                           "TransferLimits", "open_storage"]
    for name in pitr.storage.__all__:
        assert getattr(pitr.storage, name) is not None


def test_s3_storage_validates_options() -> None:
    with pytest.raises(InvalidArgument):
        S3Storage("s3://bucket", list_page_size=0)
    with pytest.raises(InvalidArgument):
        S3Storage("s3://bucket", part_size=0)
    with pytest.raises(InvalidArgument):
        RetryPolicy(attempts=0)


def test_rclone_serves_in_a_temporary_directory(s3_server: S3Server) -> None:
    assert os.path.isdir(os.path.join(s3_server.root, "data", s3_server.bucket))
