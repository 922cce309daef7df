"""S3 URLs, the retry policy, and how S3 errors are classified (transient, missing, conflict)."""

from __future__ import annotations

import random
from dataclasses import dataclass

from botocore.exceptions import ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

from pitr.errors import InvalidArgument
from pitr.storage.base import check_name

# Error codes S3 and its imitators use for "slow down" and "try again".
_TRANSIENT_CODES = frozenset({
    "SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded", "TooManyRequestsException",
    "RequestTimeout", "InternalError", "ServiceUnavailable", "ConditionalRequestConflict",
})


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """How often and how patiently to retry a transient failure.

    `attempts` counts the first try. The pause before retry n is
    ``min(max_delay, base_delay * 2**(n-1))`` scaled by a random factor in
    [0.5, 1] so that many clients do not retry in lockstep.
    """

    attempts: int = 5
    base_delay: float = 0.2
    max_delay: float = 5.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise InvalidArgument(f"retry attempts must be at least 1, not {self.attempts}")
        if self.base_delay < 0 or self.max_delay < 0:
            raise InvalidArgument("retry delays must not be negative")

    def delay(self, retry: int) -> float:
        """Seconds to wait before retry number `retry` (1-based)."""
        return min(self.max_delay, self.base_delay * 2.0 ** (retry - 1)) * random.uniform(0.5, 1.0)


def parse_s3_url(url: str) -> tuple[str, str]:
    """Split ``s3://bucket/prefix`` into bucket and prefix (without slashes at either end)."""
    if not url.startswith("s3://"):
        raise InvalidArgument(f"{url!r} is not an s3://bucket/prefix URL")
    bucket, _, prefix = url[len("s3://"):].partition("/")
    prefix = prefix.strip("/")
    if not bucket:
        raise InvalidArgument(f"{url!r} names no bucket; expected s3://bucket/prefix")
    if prefix:
        check_name(prefix)
    return bucket, prefix


def status_of(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


def code_of(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, BotoConnectionError | HTTPClientError):
        return True
    if isinstance(exc, ClientError):
        if conditional_put_unsupported(exc):
            return False
        return status_of(exc) >= 500 or status_of(exc) == 429 or code_of(exc) in _TRANSIENT_CODES
    return False


def is_precondition_failed(exc: ClientError) -> bool:
    return status_of(exc) == 412 or code_of(exc) == "PreconditionFailed"


def is_not_found(exc: ClientError) -> bool:
    return code_of(exc) != "NoSuchBucket" and (status_of(exc) == 404 or code_of(exc) in ("NoSuchKey", "404"))


def conditional_put_unsupported(exc: ClientError) -> bool:
    return status_of(exc) == 501 or code_of(exc) == "NotImplemented"
