"""Encoding and decoding of etcd's v3 JSON gRPC-gateway messages.

The gateway speaks protobuf JSON: bytes fields are base64, 64-bit integers
are decimal strings, and fields holding their default value (0, empty,
false, PUT) are left out. Everything here is pure and synchronous.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from pitr.errors import InvalidArgument

from ._errors import (
    GRPC_INVALID_ARGUMENT,
    GRPC_NOT_FOUND,
    GRPC_OUT_OF_RANGE,
    GRPC_UNAVAILABLE,
    CompactedError,
    EtcdError,
    LeaseNotFound,
    RequestTooLarge,
)
from ._types import (
    Compare,
    Delete,
    DeleteResult,
    EventType,
    Get,
    GetResult,
    KeyValue,
    Put,
    PutResult,
    TxnOperation,
    TxnOperationResult,
    TxnResult,
    WatchEvent,
)

JSONObject = dict[str, Any]

# etcd errors after which a write was certainly not applied, so another member may be asked.
_WRITE_RETRY_SAFE_MESSAGES = frozenset({
    "etcdserver: no leader",
    "etcdserver: not capable",
    "etcdserver: too many requests",
    "raft proposal dropped",
})


def encode_bytes(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def decode_bytes(obj: JSONObject, field: str) -> bytes:
    text = obj.get(field)
    if text is None:
        return b""
    if not isinstance(text, str):
        raise EtcdError(f"field {field!r} of an etcd response is {type(text).__name__}, expected base64 text")
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error as exc:
        raise EtcdError(f"field {field!r} of an etcd response is not valid base64") from exc


def decode_int(obj: JSONObject, field: str) -> int:
    value = obj.get(field)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise EtcdError(f"field {field!r} of an etcd response is {value!r}, expected an integer")
    try:
        return int(value)
    except ValueError as exc:
        raise EtcdError(f"field {field!r} of an etcd response is {value!r}, expected an integer") from exc


def header_revision(payload: JSONObject) -> int:
    header = payload.get("header")
    return decode_int(header, "revision") if isinstance(header, dict) else 0


def prefix_range_end(prefix: bytes) -> bytes:
    """The ``range_end`` that selects every key starting with ``prefix`` (etcd's GetPrefixRangeEnd)."""
    end = bytearray(prefix)
    while end:
        if end[-1] < 0xFF:
            end[-1] += 1
            return bytes(end)
        end.pop()
    # An empty prefix, or one of only 0xff bytes: "\0" means "to the end of the keyspace".
    return b"\0"


def key_range(key: bytes, *, prefix: bool) -> JSONObject:
    """The ``key``/``range_end`` pair for one key, or for every key under a prefix."""
    if not prefix:
        if not key:
            raise InvalidArgument("an etcd key must not be empty")
        return {"key": encode_bytes(key)}
    start = key if key else b"\0"
    return {"key": encode_bytes(start), "range_end": encode_bytes(prefix_range_end(key))}


def decode_key_value(obj: JSONObject) -> KeyValue:
    return KeyValue(
        key=decode_bytes(obj, "key"),
        value=decode_bytes(obj, "value"),
        create_revision=decode_int(obj, "create_revision"),
        mod_revision=decode_int(obj, "mod_revision"),
        version=decode_int(obj, "version"),
        lease=decode_int(obj, "lease"),
    )


def decode_key_values(payload: JSONObject) -> tuple[KeyValue, ...]:
    return tuple(decode_key_value(kv) for kv in payload.get("kvs") or ())


def decode_event(obj: JSONObject) -> WatchEvent:
    kind = obj.get("type", "PUT")
    if kind not in ("PUT", "DELETE", 0, 1):
        raise EtcdError(f"etcd sent a watch event of unknown type {kind!r}")
    event_type = EventType.DELETE if kind in ("DELETE", 1) else EventType.PUT
    kv = decode_key_value(obj.get("kv") or {})
    return WatchEvent(type=event_type, key=kv.key, value=kv.value, mod_revision=kv.mod_revision,
                      create_revision=kv.create_revision, version=kv.version, lease=kv.lease)


def encode_compare(compare: Compare) -> JSONObject:
    body = key_range(compare.key, prefix=False)
    body.update(target=compare.target, result=compare.result)
    field = {"VERSION": "version", "CREATE": "create_revision", "MOD": "mod_revision",
             "VALUE": "value", "LEASE": "lease"}[compare.target]
    operand = compare.operand
    body[field] = encode_bytes(operand) if isinstance(operand, bytes) else str(operand)
    return body


def encode_operation(operation: TxnOperation) -> JSONObject:
    if isinstance(operation, Put):
        put = key_range(operation.key, prefix=False)
        put["value"] = encode_bytes(operation.value)
        if operation.lease:
            put["lease"] = str(operation.lease)
        return {"request_put": put}
    if isinstance(operation, Delete):
        return {"request_delete_range": key_range(operation.key, prefix=operation.prefix)}
    return {"request_range": key_range(operation.key, prefix=operation.prefix)}


def decode_txn_response(payload: JSONObject, operations: list[TxnOperation]) -> TxnResult:
    revision = header_revision(payload)
    results: list[TxnOperationResult] = []
    for response, operation in zip(payload.get("responses") or (), operations, strict=False):
        if isinstance(operation, Put):
            results.append(PutResult(revision=revision))
        elif isinstance(operation, Delete):
            deleted = decode_int(response.get("response_delete_range") or {}, "deleted")
            results.append(DeleteResult(revision=revision, deleted=deleted))
        elif isinstance(operation, Get):
            ranged = response.get("response_range") or {}
            results.append(GetResult(revision=revision, kvs=decode_key_values(ranged)))
    return TxnResult(succeeded=bool(payload.get("succeeded", False)), revision=revision,
                     responses=tuple(results))


def parse_json_object(text: bytes | str, *, endpoint: str, what: str) -> JSONObject:
    try:
        payload = json.loads(text)
    except ValueError as exc:
        raise EtcdError(f"{endpoint}: {what} answered with invalid JSON: {str(text)[:200]}",
                        endpoint=endpoint) from exc
    if not isinstance(payload, dict):
        raise EtcdError(f"{endpoint}: {what} answered with JSON that is not an object", endpoint=endpoint)
    return payload


@dataclass(frozen=True, slots=True)
class GatewayError:
    """An error reported in a gateway response: etcd's message and the gRPC code."""

    message: str
    code: int | None


def find_gateway_error(payload: JSONObject) -> GatewayError | None:
    """The error in a unary error body (``{"error", "message", "code"}``) or a stream message."""
    error = payload.get("error")
    if error is None:
        return None
    if isinstance(error, dict):  # streaming form: {"error": {"grpc_code", "message", ...}}
        code = error.get("grpc_code", error.get("code"))
        message = error.get("message") or error.get("error") or json.dumps(error)
    else:
        code = payload.get("code")
        message = payload.get("message") or str(error)
    return GatewayError(message=str(message), code=code if isinstance(code, int) else None)


def translate_error(error: GatewayError, *, endpoint: str, what: str,
                    revision: int | None = None) -> EtcdError:
    """The pitr exception for an error etcd reported while serving ``what``."""
    text = f"{endpoint}: {what} failed: {error.message}"
    if "required revision has been compacted" in error.message:
        return CompactedError(None, endpoint=endpoint, requested_revision=revision, code=error.code)
    if error.code == GRPC_INVALID_ARGUMENT and ("too many operations" in error.message
                                                 or "request is too large" in error.message):
        return RequestTooLarge(text, endpoint=endpoint, code=error.code)
    if error.code == GRPC_NOT_FOUND and "lease not found" in error.message:
        return LeaseNotFound(text, endpoint=endpoint, code=error.code)
    if error.code == GRPC_OUT_OF_RANGE and "future revision" in error.message:
        return EtcdError(text + " (the revision is newer than the member's current revision)",
                         endpoint=endpoint, code=error.code)
    return EtcdError(text, endpoint=endpoint, code=error.code)


def may_retry_elsewhere(error: EtcdError, *, idempotent: bool) -> bool:
    """Whether another member may be asked after etcd answered with ``error``.

    Reads retry on any unavailability; writes only when etcd says the
    request was not applied.
    """
    if isinstance(error, CompactedError | RequestTooLarge | LeaseNotFound):
        return False
    message = str(error)
    if any(safe in message for safe in _WRITE_RETRY_SAFE_MESSAGES):
        return True
    return idempotent and error.code == GRPC_UNAVAILABLE
