"""The S3 server fixtures of tests/remote, for the standby that follows an S3 repository."""

from tests.remote.conftest import aws_env, s3, s3_server

__all__ = ["aws_env", "s3", "s3_server"]
