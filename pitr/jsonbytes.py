"""Keys and values in JSON (import, export, log, history, diff): text when it is text, else base64.

A key or value is written as the string itself when it is valid UTF-8 made of
printable characters (tab, newline and carriage return allowed), and as
``{"b64": "..."}`` otherwise. Readers accept both forms.
"""

from __future__ import annotations

import base64
import binascii
import json

from pitr.errors import InvalidArgument

_ALLOWED_CONTROLS = frozenset("\t\n\r")


def bytes_to_json(data: bytes) -> str | dict[str, str]:
    """A key or value for JSON: the text itself when it is printable UTF-8, else {"b64": ...}."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and (text.isprintable() or
                             all(ch.isprintable() or ch in _ALLOWED_CONTROLS for ch in text)):
        return text
    return {"b64": base64.b64encode(data).decode("ascii")}


def bytes_from_json(field: object, *, what: str = "field") -> bytes:
    """The bytes a JSON key or value field stands for: a string (UTF-8) or {"b64": "..."}."""
    if isinstance(field, str):
        try:
            return field.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InvalidArgument(f"{what}: {field[:40]!r} is not valid Unicode text ({exc.reason}); "
                                  "write binary data as {\"b64\": \"...\"}") from exc
    if isinstance(field, dict) and set(field) == {"b64"} and isinstance(field["b64"], str):
        try:
            return base64.b64decode(field["b64"], validate=True)
        except (binascii.Error, ValueError) as exc:
            raise InvalidArgument(f"{what}: {field['b64'][:40]!r} is not valid base64: {exc}") from exc
    found = "missing (null)" if field is None else f"{type(field).__name__} {json.dumps(field)[:60]}"
    raise InvalidArgument(f"{what} must be a string or an object {{\"b64\": \"...\"}}, not {found}")
