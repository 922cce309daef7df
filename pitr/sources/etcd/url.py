"""etcd locations on the command line: ``etcd://host:port[,host:port...][/prefix]``.

The path after the members is the key prefix, verbatim and percent-decoded,
leading slash included: ``etcd://10.0.0.1:2379/registry/`` archives the keys
under ``/registry/``. Without a path the whole keyspace is meant. Keys that do
not start with a slash are named with a query, ``etcd://h:2379?prefix=app/``.
``etcds://`` speaks https to the members.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, unquote_to_bytes, urlsplit

from pitr.errors import InvalidArgument

from ._transport import normalize_endpoint

SCHEMES = {"etcd": "http", "etcds": "https"}


@dataclass(frozen=True, slots=True)
class EtcdLocation:
    """The members to talk to and the key prefix to archive or restore into."""

    endpoints: tuple[str, ...]
    prefix: bytes
    prefix_given: bool = True

    def describe(self) -> str:
        shown = self.prefix.decode("utf-8", "backslashreplace")
        return f"{','.join(self.endpoints)} prefix {shown!r}"


def is_etcd_url(text: str | None) -> bool:
    """Whether `text` names an etcd location rather than a directory or repository."""
    return text is not None and text.split("://", 1)[0] in SCHEMES and "://" in text


def parse_etcd_url(text: str) -> EtcdLocation:
    """Parse ``etcd://h1:p1,h2:p2/prefix`` (see the module docstring); InvalidArgument if malformed."""
    example = "such as etcd://127.0.0.1:2379/registry/"
    scheme, sep, rest = text.partition("://")
    if not sep or scheme not in SCHEMES:
        raise InvalidArgument(f"{text!r} is not an etcd URL; give etcd://HOST:PORT[,HOST:PORT...][/PREFIX], "
                              f"{example}")
    end = min((i for i in (rest.find("/"), rest.find("?"), rest.find("#")) if i >= 0), default=len(rest))
    hosts, tail = rest[:end], rest[end:]
    slash = tail.startswith("/")
    if not hosts:
        raise InvalidArgument(f"{text!r} names no etcd member; {example}")
    endpoints = []
    for host in hosts.split(","):
        if not host or "@" in host:
            raise InvalidArgument(f"{text!r}: member {host!r} is not HOST:PORT; {example}")
        if ":" not in host.rsplit("]", 1)[-1]:
            raise InvalidArgument(f"{text!r}: member {host!r} has no port; {example}")
        endpoints.append(normalize_endpoint(f"{SCHEMES[scheme]}://{host}"))
    parts = urlsplit(f"http://x{tail}")
    if parts.fragment:
        raise InvalidArgument(f"{text!r}: an etcd URL has no #fragment")
    query = parse_qs(parts.query, keep_blank_values=True)
    unknown = set(query) - {"prefix"}
    if unknown:
        raise InvalidArgument(f"{text!r}: unknown option {sorted(unknown)[0]!r}; only ?prefix= is understood")
    if "prefix" in query:
        if slash or len(query["prefix"]) != 1:
            raise InvalidArgument(f"{text!r}: give the prefix either as the path or once as ?prefix=, not both")
        return EtcdLocation(tuple(endpoints), unquote_to_bytes(query["prefix"][0]))
    if not slash:
        return EtcdLocation(tuple(endpoints), b"", prefix_given=False)
    return EtcdLocation(tuple(endpoints), unquote_to_bytes(parts.path))
