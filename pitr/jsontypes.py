"""The type of a JSON document, for signatures that take or give one.

`JSONValue` is what `json.loads` can return and `json.dumps` accepts;
`JSONObject` is a JSON object (a catalog row, a snapshot's metadata, a
command's `--json` output). Readers narrow a `JSONValue` with `isinstance`
before they use it, which is what makes a malformed document an error rather
than a crash deep inside.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TypeAlias

# Sequence and Mapping, not list and dict: a `dict[str, str]` or a `list[JSONObject]` is a JSONValue
# too (both are covariant). `json.loads` gives lists and dicts; `json.dumps` takes lists, tuples, dicts.
JSONValue: TypeAlias = "None | bool | int | float | str | Sequence[JSONValue] | Mapping[str, JSONValue]"
JSONObject: TypeAlias = "dict[str, JSONValue]"

__all__ = ["JSONObject", "JSONValue"]
