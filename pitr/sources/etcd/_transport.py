"""HTTP requests to etcd members with failover: which member, when to move on, when to give up."""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar
from urllib.parse import urlsplit

import anyio
import httpx

from pitr.errors import InvalidArgument

from ._errors import GRPC_UNAVAILABLE, EtcdError, EtcdUnavailable
from ._gateway import JSONObject, find_gateway_error, may_retry_elsewhere, parse_json_object, translate_error

T = TypeVar("T")

_FIRST_BACKOFF = 0.05
_MAX_BACKOFF = 0.5


def normalize_endpoint(endpoint: str) -> str:
    """``http://host:port`` without a trailing slash; anything else is an InvalidArgument."""
    parts = urlsplit(endpoint.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidArgument(f"etcd endpoint {endpoint!r} is not an http:// or https:// URL with a host, "
                              "such as http://127.0.0.1:2379")
    if parts.path.strip("/") or parts.query or parts.fragment:
        raise InvalidArgument(f"etcd endpoint {endpoint!r} must not have a path; give scheme, host and port only")
    return f"{parts.scheme}://{parts.netloc}"


class GatewayTransport:
    """One httpx client shared by all requests, and the member they go to first.

    Reads move to the next member on any connection failure or
    unavailability; writes only when the request certainly was not applied
    (connection refused, no leader). After every member failed once the
    transport waits, backing off, and goes round again until
    ``retry_timeout`` runs out, then raises `EtcdUnavailable`.
    """

    def __init__(self, endpoints: Sequence[str], *, request_timeout: float, connect_timeout: float,
                 retry_timeout: float, verify: ssl.SSLContext | bool) -> None:
        if isinstance(endpoints, str):
            raise InvalidArgument("endpoints must be a list of URLs, not one string")
        if not endpoints:
            raise InvalidArgument("at least one etcd endpoint is needed, such as http://127.0.0.1:2379")
        if request_timeout <= 0 or connect_timeout <= 0 or retry_timeout < 0:
            raise InvalidArgument("request_timeout and connect_timeout must be positive, retry_timeout not negative")
        self.endpoints: tuple[str, ...] = tuple(dict.fromkeys(normalize_endpoint(e) for e in endpoints))
        self.request_timeout = request_timeout
        self.connect_timeout = connect_timeout
        self.retry_timeout = retry_timeout
        self._verify = verify
        self._current = 0
        self._http: httpx.AsyncClient | None = None

    @property
    def endpoint(self) -> str:
        """The member requests go to first."""
        return self.endpoints[self._current]

    def open(self) -> None:
        if self._http is not None:
            raise InvalidArgument("this EtcdClient is already open")
        # Proxy settings in the environment are ignored: etcd members are addressed directly.
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(self.request_timeout, connect=self.connect_timeout),
            verify=self._verify, trust_env=False, headers={"content-type": "application/json"})

    async def aclose(self) -> None:
        http, self._http = self._http, None
        if http is not None:
            with anyio.CancelScope(shield=True):
                await http.aclose()

    def mark_failed(self, endpoint: str) -> None:
        """Move on from ``endpoint`` unless another task already did."""
        if self.endpoints[self._current] == endpoint:
            self._current = (self._current + 1) % len(self.endpoints)

    async def call(self, path: str, body: JSONObject, *, idempotent: bool, what: str,
                   revision: int | None = None, only: str | None = None) -> tuple[JSONObject, str]:
        """POST ``body`` and return etcd's answer and the member that gave it.

        ``only`` sends the request to that one member, without failover.
        ``revision`` is the revision the request reads at, for error messages.
        """
        http = self._require_open()

        async def attempt(endpoint: str) -> JSONObject:
            response = await http.post(endpoint + path, json=body)
            return self._check_response(endpoint, response.status_code, response.content, what=what,
                                        revision=revision)

        if only is None:
            return await self._with_failover(attempt, idempotent=idempotent, what=what)
        endpoint = normalize_endpoint(only)
        try:
            return await attempt(endpoint), endpoint
        except httpx.HTTPError as exc:
            raise EtcdUnavailable(f"{endpoint}: {what} failed: {exc!r}", endpoint=endpoint) from exc

    async def open_stream(self, path: str, body: JSONObject, *, what: str,
                          idle_timeout: float | None) -> tuple[httpx.Response, str]:
        """Open a streaming response on the first member that accepts it; the caller closes it.

        ``idle_timeout`` bounds the wait for each next chunk (None: wait forever).
        """
        http = self._require_open()
        timeout = httpx.Timeout(self.request_timeout, connect=self.connect_timeout, read=idle_timeout)

        async def attempt(endpoint: str) -> httpx.Response:
            request = http.build_request("POST", endpoint + path, json=body, timeout=timeout)
            response = await http.send(request, stream=True)
            if response.status_code == httpx.codes.OK:
                return response
            try:
                content = await response.aread()
            finally:
                await response.aclose()
            self._check_response(endpoint, response.status_code, content, what=what, revision=None)
            raise EtcdError(f"{endpoint}: {what} answered HTTP {response.status_code}", endpoint=endpoint)

        return await self._with_failover(attempt, idempotent=True, what=what)

    def _require_open(self) -> httpx.AsyncClient:
        if self._http is None:
            raise EtcdError("the EtcdClient is not open; use it as 'async with EtcdClient([...]) as client'")
        return self._http

    @staticmethod
    def _check_response(endpoint: str, status_code: int, content: bytes, *, what: str,
                        revision: int | None) -> JSONObject:
        payload = parse_json_object(content, endpoint=endpoint, what=what)
        error = find_gateway_error(payload)
        if error is not None:
            raise translate_error(error, endpoint=endpoint, what=what, revision=revision)
        if status_code != httpx.codes.OK:
            raise EtcdError(f"{endpoint}: {what} answered HTTP {status_code}", endpoint=endpoint)
        return payload

    async def _with_failover(self, attempt: Callable[[str], Awaitable[T]], *, idempotent: bool,
                             what: str) -> tuple[T, str]:
        deadline = anyio.current_time() + self.retry_timeout
        backoff = _FIRST_BACKOFF
        failures: list[str] = []
        while True:
            endpoint = self.endpoint
            try:
                return await attempt(endpoint), endpoint
            except httpx.TransportError as exc:
                not_sent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)
                if not (idempotent or not_sent):
                    raise EtcdUnavailable(f"{endpoint}: {what} failed after the request was sent ({exc!r}); "
                                          "it may or may not have been applied", endpoint=endpoint) from exc
                failures.append(f"{endpoint}: {exc!r}")
                cause: Exception = exc
            except httpx.HTTPError as exc:  # not a connection problem: another member would not help
                raise EtcdError(f"{endpoint}: {what} failed: {exc!r}", endpoint=endpoint) from exc
            except EtcdError as exc:
                if may_retry_elsewhere(exc, idempotent=idempotent):
                    failures.append(str(exc))
                    cause = exc
                elif exc.code == GRPC_UNAVAILABLE:  # a write that timed out or lost its leader
                    raise EtcdUnavailable(f"{exc}; it may or may not have been applied", endpoint=endpoint,
                                          code=exc.code) from exc
                else:
                    raise
            self.mark_failed(endpoint)
            if len(failures) % len(self.endpoints):
                continue  # a member of this round has not been tried yet
            if anyio.current_time() + backoff > deadline:
                tried = "; ".join(failures[-len(self.endpoints):])
                raise EtcdUnavailable(f"{what} failed on every etcd endpoint ({tried})",
                                      endpoint=endpoint) from cause
            await anyio.sleep(backoff)
            backoff = min(backoff * 2, _MAX_BACKOFF)
