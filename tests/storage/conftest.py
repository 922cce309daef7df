"""Fixtures for the storage conformance suite: one `storage` per backend.

Tests run on trio through anyio's pytest plugin. The S3 backend talks to a real
`rclone serve s3` started once per session; each test gets its own key prefix.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from pitr.storage import LocalStorage, S3Storage, Storage
from pitr.storage.s3 import RetryPolicy
from tests.servers.s3 import ACCESS_KEY, SECRET_KEY, S3Server, running_s3_server

# Small sizes so that multipart uploads and list pagination run in milliseconds.
MULTIPART_THRESHOLD = 256 * 1024
PART_SIZE = 100 * 1024
LIST_PAGE_SIZE = 10
FAST_RETRY = RetryPolicy(attempts=4, base_delay=0.01, max_delay=0.05)

BACKENDS = ["local", "s3"]


@pytest.fixture
def anyio_backend() -> str:
    return "trio"


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    with running_s3_server(str(tmp_path_factory.mktemp("s3-server"))) as server:
        yield server


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Credentials for the test server, isolated from the machine's own AWS configuration."""
    for variable in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL",
                     "AWS_ENDPOINT_URL_S3", "AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def s3_url(server: S3Server) -> str:
    """A fresh repository URL in the test bucket, so tests never see each other's objects."""
    return f"s3://{server.bucket}/t-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def make_s3_storage(s3_server: S3Server, aws_env: None) -> Callable[..., S3Storage]:
    """Build an S3Storage on the test server with the suite's small sizes; keywords override."""
    def make(url: str | None = None, **options: object) -> S3Storage:
        settings: dict[str, object] = {
            "endpoint_url": s3_server.endpoint, "multipart_threshold": MULTIPART_THRESHOLD,
            "part_size": PART_SIZE, "list_page_size": LIST_PAGE_SIZE, "retry": FAST_RETRY}
        settings.update(options)
        return S3Storage(url or s3_url(s3_server), **settings)  # type: ignore[arg-type]

    return make


@pytest.fixture(params=BACKENDS)
def storage_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Storage]:
    if request.param == "local":
        (tmp_path / "repository").mkdir(mode=0o700)  # like a bucket, the repository directory exists
        return lambda: LocalStorage(str(tmp_path / "repository"))
    make: Callable[[], Storage] = request.getfixturevalue("make_s3_storage")
    return make


@pytest.fixture
async def storage(storage_factory: Callable[[], Storage], anyio_backend: str) -> AsyncIterator[Storage]:
    """A fresh, empty repository on each backend."""
    backend = storage_factory()
    try:
        yield backend
    finally:
        await backend.aclose()
