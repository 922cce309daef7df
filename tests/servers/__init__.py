"""Real servers (etcd, an S3-compatible server) started on 127.0.0.1 for the integration tests."""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Callable

import pytest


def require_binary(find: Callable[[], str | None], name: str, install_command: str) -> str:
    """The server's binary; without it skip the test, or fail it under CI=true (CI must not skip)."""
    binary = find()
    if binary is None:
        message = f"{name} is not installed; install it with: {install_command}"
        if os.environ.get("CI") == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return binary


def free_ports(count: int) -> list[int]:
    """Distinct free ports on 127.0.0.1 (held open together so none repeats)."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
