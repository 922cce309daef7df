"""Fixtures for archiving to, and restoring from, a remote (S3) repository.

One `rclone serve s3` runs for the session; each test archives under its own
key prefix. The credentials are set for the whole module (module-scoped
histories talk to S3 while they are built) and the machine's own AWS
configuration is hidden.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from tests.servers.s3 import ACCESS_KEY, SECRET_KEY, S3Server, running_s3_server

_HIDDEN = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3",
           "AWS_REGION", "AWS_DEFAULT_REGION", "PITR_DATA", "PITR_REPO", "PITR_S3_ENDPOINT", "PITR_CACHE_DIR")


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    with running_s3_server(str(tmp_path_factory.mktemp("s3-server"))) as server:
        yield server


@pytest.fixture(scope="module")
def aws_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Credentials for the test server; the cache for remote catalogs in a temporary directory."""
    home = tmp_path_factory.mktemp("aws-home")
    with pytest.MonkeyPatch.context() as patch:
        for variable in _HIDDEN:
            patch.delenv(variable, raising=False)
        patch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        patch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        patch.setenv("AWS_CONFIG_FILE", str(home / "no-aws-config"))
        patch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(home / "no-aws-credentials"))
        patch.setenv("AWS_EC2_METADATA_DISABLED", "true")
        patch.setenv("XDG_CACHE_HOME", str(home / "cache"))
        yield


@pytest.fixture(scope="module")
def s3(s3_server: S3Server, aws_env: None) -> S3Server:
    """The running server, with the environment set up to talk to it."""
    return s3_server


def s3_url(server: S3Server) -> str:
    """A fresh repository URL in the test bucket, so tests never see each other's objects."""
    return f"s3://{server.bucket}/r-{uuid.uuid4().hex[:12]}"


def backing_dir(server: S3Server, url: str) -> str:
    """The directory behind an s3:// repository URL on the rclone server."""
    prefix = url[len(f"s3://{server.bucket}/"):]
    return os.path.join(server.root, "data", server.bucket, *prefix.split("/"))
