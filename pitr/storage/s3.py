"""Repository backend on Amazon S3 and S3-compatible object stores.

Objects live under ``s3://bucket/prefix/<name>``. boto3 does the signing and
the HTTP; every call runs in a worker thread so the engine's event loop (trio
or asyncio, through anyio) never blocks on the network.

Publishing never overwrites: a conditional PUT (``If-None-Match: *``) where the
server honours it, HEAD-then-PUT where it does not. Transient failures
(connection errors, 5xx, throttling) are retried here with bounded exponential
backoff; botocore's own retries are switched off so that `requests` counts
every request that went out, retries included.
"""

from __future__ import annotations

import base64
import builtins
import hashlib
import os
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar, cast

import anyio
import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from pitr.errors import InvalidArgument, ObjectExists, ObjectNotFound, StorageError, file_error
from pitr.storage._s3_errors import (
    RetryPolicy,
    code_of,
    conditional_put_unsupported,
    is_not_found,
    is_precondition_failed,
    is_transient,
    parse_s3_url,
    status_of,
)
from pitr.storage.base import DOWNLOAD_CHUNK, ObjectInfo, ObjectLock, check_name
from pitr.storage.ratelimit import NO_LIMITS, TransferLimits


class _Digest(Protocol):
    """What pitr uses of a hashlib object (its class lives in a private module)."""

    def update(self, data: bytes, /) -> None: ...
    def digest(self) -> bytes: ...
    def hexdigest(self) -> str: ...

T = TypeVar("T")

_MIB = 1 << 20
DEFAULT_RETRY = RetryPolicy()
# The conditional-put probe writes and deletes one object with this name prefix.
_PROBE_PREFIX = ".pitr-probe-"


def _md5(data: bytes) -> _Digest:
    return hashlib.md5(data, usedforsecurity=False)


def _read_range(path: str, offset: int, length: int) -> bytes:
    with open(path, "rb") as fh:
        fh.seek(offset)
        return fh.read(length)


class S3Storage:
    """Objects under one bucket and key prefix on S3 or an S3-compatible server.

    Credentials and region come from the standard AWS sources (environment,
    shared config and credentials files, instance roles). The endpoint is
    `endpoint_url`, else ``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL``, else AWS.

    `conditional_put` says whether the server honours ``If-None-Match: *`` on
    PUT; None means "assume so on AWS, probe once on any other endpoint".
    `requests` counts the requests sent, retries included, by operation
    (``PutObject``, ``GetObject``, ...); `retries` counts the retries alone.
    `limits` caps the bytes per second of uploads and downloads (`pitr.storage.ratelimit`).
    `object_lock` puts every object (single PUTs and multipart uploads alike) with S3 Object Lock
    retention in COMPLIANCE mode until its put time plus the lock's days; the bucket must have been
    created with Object Lock enabled.
    """

    def __init__(self, url: str, *, endpoint_url: str | None = None, region: str | None = None,
                 multipart_threshold: int = 16 * _MIB, part_size: int = 16 * _MIB,
                 list_page_size: int = 1000, retry: RetryPolicy = DEFAULT_RETRY,
                 conditional_put: bool | None = None, limits: TransferLimits = NO_LIMITS,
                 object_lock: ObjectLock | None = None) -> None:
        self.bucket, self.prefix = parse_s3_url(url)
        self.url = f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"
        if multipart_threshold < 1 or part_size < 1:
            raise InvalidArgument("multipart_threshold and part_size must be positive")
        if not 1 <= list_page_size <= 1000:
            raise InvalidArgument(f"list_page_size must be within 1..1000, not {list_page_size}")
        self.endpoint_url = (endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3")
                             or os.environ.get("AWS_ENDPOINT_URL") or None)
        self.region = region
        self.multipart_threshold = multipart_threshold
        self.part_size = part_size
        self.list_page_size = list_page_size
        self.retry = retry
        self.limits = limits
        self.object_lock = object_lock
        # No probe under Object Lock: its objects could not be deleted again (a refused conditional PUT is
        # still recognised on the first publish, which then falls back to HEAD-then-PUT).
        self.conditional_put = conditional_put if conditional_put is not None else (
            True if self.endpoint_url is None or object_lock is not None else None)
        self.requests: Counter[str] = Counter()
        self.retries: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._client: Any = None
        self._closed = False

    # -- plumbing ---------------------------------------------------------------------------------

    def _key(self, name: str) -> str:
        check_name(name)
        return f"{self.prefix}/{name}" if self.prefix else name

    def _s3(self) -> Any:  # noqa: ANN401 - the boto3 client: boto3 ships no type stubs
        """The boto3 client, created on first use inside a worker thread (it reads config files)."""
        with self._lock:
            if self._closed:
                raise StorageError(f"{self.url}: storage is closed")
            if self._client is None:
                session = boto3.session.Session()
                config = Config(
                    region_name=self.region or session.region_name or "us-east-1",
                    # Retries happen in _call so that each one is counted and paced by self.retry.
                    retries={"total_max_attempts": 1},
                    # S3-compatible servers reject or mis-validate the flexible checksums recent
                    # boto3 adds by default, and full-object checksums cannot match a ranged read.
                    request_checksum_calculation="when_required",
                    response_checksum_validation="when_required",
                    s3={"addressing_style": "path" if self.endpoint_url else "auto"},
                )
                client = session.client("s3", endpoint_url=self.endpoint_url, config=config)
                client.meta.events.register("before-send.s3", self._count_request)
                self._client = client
            return self._client

    def _count_request(self, event_name: str, **_: object) -> None:
        with self._lock:
            self.requests[event_name.rsplit(".", 1)[-1]] += 1

    async def _call(self, what: str, fn: Callable[..., T], *args: object) -> T:
        """Run ``fn(attempt, *args)`` in a worker thread, retrying transient failures.

        pitr errors pass through; other boto errors become StorageError naming `what`.
        """
        attempt = 0
        while True:
            try:
                return await anyio.to_thread.run_sync(fn, attempt, *args)
            except (BotoCoreError, ClientError) as exc:
                if not is_transient(exc) or attempt + 1 >= self.retry.attempts:
                    raise self._translate(what, exc, attempt + 1) from exc
            attempt += 1
            with self._lock:
                self.retries[what.split(" ", 1)[0]] += 1
            await anyio.sleep(self.retry.delay(attempt))

    def _translate(self, what: str, exc: BotoCoreError | ClientError, attempts: int) -> StorageError:
        where = f"{self.url} (endpoint {self.endpoint_url or 'AWS'})"
        if isinstance(exc, NoCredentialsError):
            return StorageError(f"{where}: cannot {what}: no AWS credentials; set AWS_ACCESS_KEY_ID and "
                                "AWS_SECRET_ACCESS_KEY, or AWS_PROFILE")
        if isinstance(exc, ClientError) and code_of(exc) == "NoSuchBucket":
            return StorageError(f"{where}: bucket {self.bucket!r} does not exist")
        if isinstance(exc, ClientError) and self.object_lock is not None and "lock" in str(exc).lower():
            error = StorageError(f"{where}: cannot {what}: the bucket refuses Object Lock retention ({exc})")
            error.hint = ("--object-lock-days needs a bucket created with Object Lock enabled "
                          "(aws s3api create-bucket --object-lock-enabled-for-bucket); or leave the flag out")
            return error
        tries = f" after {attempts} attempts" if attempts > 1 else ""
        return StorageError(f"{where}: cannot {what}{tries}: {exc}")

    def _lock_args(self) -> dict[str, Any]:
        """The Object Lock parameters of a put made now (none without an `object_lock`)."""
        if self.object_lock is None:
            return {}
        until_ns = self.object_lock.retain_until_ns(time.time_ns())
        return {"ObjectLockMode": "COMPLIANCE",
                "ObjectLockRetainUntilDate": datetime.fromtimestamp(until_ns // 10**9, tz=UTC)}

    def _etag(self, s3: Any, key: str) -> str | None:  # noqa: ANN401 - the untyped boto3 client
        """The object's ETag without quotes, or None when it does not exist."""
        try:
            return str(s3.head_object(Bucket=self.bucket, Key=key)["ETag"]).strip('"')
        except ClientError as exc:
            if is_not_found(exc):
                return None
            raise

    def _exists_error(self, name: str) -> ObjectExists:
        return ObjectExists(f"{self.url}: {name} already exists; published files are never overwritten")

    async def _conditional_put_supported(self) -> bool:
        if self.conditional_put is None:
            # Concurrent first publishes may both probe; each uses its own probe object.
            self.conditional_put = await self._call("probe conditional put", self._probe_sync)
        return self.conditional_put

    def _probe_sync(self, attempt: int) -> bool:
        s3 = self._s3()
        key = self._key(f"{_PROBE_PREFIX}{uuid.uuid4().hex}")
        try:
            for _ in range(2):
                s3.put_object(Bucket=self.bucket, Key=key, Body=b"", IfNoneMatch="*")
            return False  # the second put replaced the first: the header was ignored
        except ClientError as exc:
            if is_precondition_failed(exc):
                return True
            if conditional_put_unsupported(exc):
                return False
            raise
        finally:
            try:
                s3.delete_object(Bucket=self.bucket, Key=key)
            except (BotoCoreError, ClientError):
                pass  # a leftover probe object is harmless: list() hides it

    # -- publish ----------------------------------------------------------------------------------

    def _put_new_sync(self, attempt: int, name: str, data: bytes, conditional: bool) -> None:
        s3 = self._s3()
        key = self._key(name)
        digest = _md5(data)
        if not conditional:
            # HEAD-then-PUT is racy: a second writer publishing the same name between our HEAD
            # and our PUT is silently overwritten (or overwrites us). pitr has one writer per
            # repository, so only a misconfigured second archiver can hit this window; servers
            # that honour If-None-Match close it.
            existing = self._etag(s3, key)
            if existing is not None:
                if attempt > 0 and existing == digest.hexdigest():
                    return  # an earlier attempt landed before its response was lost
                raise self._exists_error(name)
        extra = {"IfNoneMatch": "*"} if conditional else {}
        try:
            s3.put_object(Bucket=self.bucket, Key=key, Body=data,
                          ContentMD5=base64.b64encode(digest.digest()).decode(), **extra, **self._lock_args())
        except ClientError as exc:
            if not is_precondition_failed(exc):
                raise
            if attempt > 0 and self._etag(s3, key) == digest.hexdigest():
                return
            raise self._exists_error(name) from exc

    async def publish(self, name: str, data: bytes) -> None:
        """Store `data` as `name`; raise ObjectExists if `name` exists."""
        check_name(name)
        conditional = await self._conditional_put_supported()
        await self.limits.before_upload(len(data))
        try:
            await self._call(f"publish {name}", self._put_new_sync, name, data, conditional)
        except StorageError as exc:
            cause = exc.__cause__
            if not (conditional and isinstance(cause, ClientError) and conditional_put_unsupported(cause)):
                raise
            self.conditional_put = False
            await self._call(f"publish {name}", self._put_new_sync, name, data, False)

    async def publish_file(self, name: str, path: str) -> None:
        """Store the local file `path` as `name`; files above `multipart_threshold` go in parts."""
        check_name(name)
        try:
            size = await anyio.to_thread.run_sync(os.path.getsize, path)
            if size <= self.multipart_threshold:
                data = await anyio.to_thread.run_sync(_read_range, path, 0, size)
        except OSError as exc:
            raise StorageError(f"{self.url}: cannot publish {name} from {path}: {exc}") from exc
        if size <= self.multipart_threshold:
            await self.publish(name, data)
        else:
            await self._publish_multipart(name, path, size)

    async def _publish_multipart(self, name: str, path: str, size: int) -> None:
        key = self._key(name)
        conditional = await self._conditional_put_supported()
        # One HEAD first, even where the completion is conditional, so that no parts are uploaded
        # in vain; without a conditional completion this has the race described in _put_new_sync.
        if await self.stat(name) is not None:
            raise self._exists_error(name)
        upload_id: str = await self._call(f"start upload of {name}", self._start_upload_sync, key)
        try:
            parts: builtins.list[dict[str, Any]] = []
            whole = _md5(b"")
            part_digests = b""
            for number, offset in enumerate(range(0, size, self.part_size), start=1):
                try:
                    chunk = await anyio.to_thread.run_sync(_read_range, path, offset, self.part_size)
                except OSError as exc:
                    raise StorageError(f"{self.url}: cannot publish {name} from {path}: {exc}") from exc
                if not chunk:
                    raise StorageError(f"{self.url}: {path} shrank while being published as {name}")
                whole.update(chunk)
                part_digests += _md5(chunk).digest()
                await self.limits.before_upload(len(chunk))
                etag = await self._call(f"upload part {number} of {name}", self._upload_part_sync,
                                        key, upload_id, number, chunk)
                parts.append({"PartNumber": number, "ETag": etag})
            # A retried completion whose first try landed finds the object in place: its ETag is
            # either S3's multipart ETag or, on servers that recompute it, the whole file's MD5.
            ours = {f"{_md5(part_digests).hexdigest()}-{len(parts)}", whole.hexdigest()}
            await self._call(f"complete upload of {name}", self._complete_upload_sync,
                             name, upload_id, parts, conditional, ours)
        except BaseException:
            with anyio.CancelScope(shield=True):
                try:
                    await self._call(f"abort upload of {name}", self._abort_upload_sync, key, upload_id)
                except StorageError:
                    pass  # the bucket's lifecycle rule or the server's expiry removes the parts
            raise

    def _start_upload_sync(self, attempt: int, key: str) -> str:
        return str(self._s3().create_multipart_upload(Bucket=self.bucket, Key=key, **self._lock_args())["UploadId"])

    def _upload_part_sync(self, attempt: int, key: str, upload_id: str, number: int, chunk: bytes) -> str:
        response = self._s3().upload_part(
            Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=chunk,
            ContentMD5=base64.b64encode(_md5(chunk).digest()).decode())
        return str(response["ETag"])

    def _complete_upload_sync(self, attempt: int, name: str, upload_id: str,
                              parts: builtins.list[dict[str, Any]], conditional: bool, ours: set[str]) -> None:
        s3 = self._s3()
        key = self._key(name)
        extra = {"IfNoneMatch": "*"} if conditional else {}
        try:
            s3.complete_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id,
                                         MultipartUpload={"Parts": parts}, **extra)
        except ClientError as exc:
            landed = attempt > 0 and (is_precondition_failed(exc) or code_of(exc) == "NoSuchUpload")
            if landed and self._etag(s3, key) in ours:
                return
            if is_precondition_failed(exc):
                raise self._exists_error(name) from exc
            raise

    def _abort_upload_sync(self, attempt: int, key: str, upload_id: str) -> None:
        try:
            self._s3().abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
        except ClientError as exc:
            if code_of(exc) != "NoSuchUpload":
                raise

    async def replace(self, name: str, data: bytes) -> None:
        """Store `data` as `name`, replacing any previous object (a single PUT is atomic on S3)."""
        key = self._key(name)

        def put(attempt: int) -> None:
            self._s3().put_object(Bucket=self.bucket, Key=key, Body=data,
                                  ContentMD5=base64.b64encode(_md5(data).digest()).decode(), **self._lock_args())

        await self.limits.before_upload(len(data))
        await self._call(f"replace {name}", put)

    # -- read -------------------------------------------------------------------------------------

    def _get_sync(self, attempt: int, name: str, offset: int, length: int | None) -> bytes:
        s3 = self._s3()
        extra: dict[str, str] = {}
        if length is not None:
            extra["Range"] = f"bytes={offset}-{offset + length - 1}"
        elif offset:
            extra["Range"] = f"bytes={offset}-"
        try:
            response = s3.get_object(Bucket=self.bucket, Key=self._key(name), **extra)
        except ClientError as exc:
            if is_not_found(exc):
                raise ObjectNotFound(f"{self.url}: {name} does not exist") from exc
            if status_of(exc) == 416:
                return b""  # the range starts at or past the end of an existing object
            raise
        body = response["Body"]
        try:
            data = bytes(body.read())
        finally:
            body.close()
        if extra and response["ResponseMetadata"]["HTTPStatusCode"] == 200 and not response.get("ContentRange"):
            # The server ignored the Range header and sent the whole object. (rclone answers a
            # honoured range with 200 rather than 206, but with a Content-Range header.)
            data = data[offset:] if length is None else data[offset:offset + length]
        return data

    async def read(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        """Return bytes [offset, offset+length) of `name` (to the end when length is None)."""
        check_name(name)
        if offset < 0 or (length is not None and length < 0):
            raise InvalidArgument(f"invalid range offset={offset} length={length} for {name}")
        if length == 0:
            if await self.stat(name) is None:
                raise ObjectNotFound(f"{self.url}: {name} does not exist")
            return b""
        data = await self._call(f"read {name}", self._get_sync, name, offset, length)
        await self.limits.after_download(len(data))
        return data

    def _download_sync(self, attempt: int, name: str, path: str) -> int:
        s3 = self._s3()
        try:
            response = s3.get_object(Bucket=self.bucket, Key=self._key(name))
        except ClientError as exc:
            if is_not_found(exc):
                raise ObjectNotFound(f"{self.url}: {name} does not exist") from exc
            raise
        body = response["Body"]
        try:
            try:
                out = open(path, "wb")  # noqa: SIM115 - truncated again by a retry
            except OSError as exc:
                raise file_error(exc, path, f"write the download of {name}") from exc
            with out:
                written = 0
                for chunk in body.iter_chunks(DOWNLOAD_CHUNK):  # botocore checks the Content-Length
                    try:
                        out.write(chunk)
                    except OSError as exc:
                        raise file_error(exc, path, f"write the download of {name}") from exc
                    written += len(chunk)
                    self.limits.after_download_blocking(len(chunk))  # the socket waits meanwhile
        finally:
            body.close()
        return written

    async def download(self, name: str, path: str) -> int:
        """Stream `name` into the local file `path`, one chunk in memory at a time."""
        check_name(name)
        return await self._call(f"download {name}", self._download_sync, name, path)

    def _head(self, key: str) -> dict[str, Any] | None:
        """The object's HEAD response, or None when it does not exist (in a worker thread)."""
        try:
            return cast("dict[str, Any]", self._s3().head_object(Bucket=self.bucket, Key=key))
        except ClientError as exc:
            if is_not_found(exc):
                return None
            raise

    async def stat(self, name: str) -> ObjectInfo | None:
        """The object's info, or None when it does not exist."""
        key = self._key(name)

        def head(attempt: int) -> ObjectInfo | None:
            response = self._head(key)
            return None if response is None else ObjectInfo(name, int(response["ContentLength"]))

        return await self._call(f"stat {name}", head)

    async def retained_until(self, name: str) -> int | None:
        """The object's Object Lock retain-until date (ns), or None when it has none or is missing."""
        key = self._key(name)

        def head(attempt: int) -> int | None:
            response = self._head(key)
            if response is None:
                return None
            until = response.get("ObjectLockRetainUntilDate")
            if not isinstance(until, datetime):
                return None
            return int(until.timestamp()) * 10**9 + until.microsecond * 1000

        return await self._call(f"read the retention of {name}", head)

    def _list_page_sync(self, attempt: int, key_prefix: str, start_after: str,
                        token: str | None) -> dict[str, Any]:
        extra = {"StartAfter": start_after} if start_after else {}
        if token:
            extra["ContinuationToken"] = token
        response: dict[str, Any] = self._s3().list_objects_v2(
            Bucket=self.bucket, Prefix=key_prefix, Delimiter="/", MaxKeys=self.list_page_size, **extra)
        return response

    async def list(self, prefix: str, after: str | None = None) -> builtins.list[ObjectInfo]:
        """Objects named `prefix`... directly inside the prefix's directory, after `after`, in name order."""
        root = f"{self.prefix}/" if self.prefix else ""
        found: builtins.list[ObjectInfo] = []
        token: str | None = None
        while True:
            page = await self._call(f"list {prefix!r}", self._list_page_sync, root + prefix,
                                    root + after if after else "", token)
            for item in page.get("Contents", []):
                name = str(item["Key"])[len(root):]
                if name.rpartition("/")[2].startswith(_PROBE_PREFIX) or name.endswith("/"):
                    continue
                if after is None or name > after:
                    found.append(ObjectInfo(name, int(item["Size"])))
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                break
        found.sort(key=lambda info: info.name)
        return found

    async def delete(self, name: str) -> None:
        """Remove `name`; a missing object is not an error."""
        key = self._key(name)

        def delete(attempt: int) -> None:
            s3 = self._s3()
            try:
                # In a versioned bucket (Object Lock needs one) a plain DELETE only hides the object behind
                # a delete marker and frees nothing: delete its version (the only one: never overwritten).
                version = s3.head_object(Bucket=self.bucket, Key=key).get("VersionId")
            except ClientError as exc:
                if is_not_found(exc):
                    return
                raise
            extra = {"VersionId": version} if isinstance(version, str) and version not in ("", "null") else {}
            try:
                s3.delete_object(Bucket=self.bucket, Key=key, **extra)
            except ClientError as exc:
                if not is_not_found(exc):
                    raise

        await self._call(f"delete {name}", delete)

    async def aclose(self) -> None:
        """Close the connection pool; later calls raise StorageError."""
        with self._lock:
            client, self._client, self._closed = self._client, None, True
        if client is not None:
            await anyio.to_thread.run_sync(client.close)
