"""A real S3-compatible server for tests: moto's server mode on a free 127.0.0.1 port, in a
thread of the test process (buckets live in its memory and vanish with it)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

ACCESS_KEY_ID = "testing-key-id"  # moto accepts any keys; these only have to be sent
SECRET_ACCESS_KEY = "testing-secret-key"  # noqa: S105 (not a secret)


@dataclass(frozen=True)
class S3Server:
    endpoint: str

    def client(self) -> object:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=ACCESS_KEY_ID,
            aws_secret_access_key=SECRET_ACCESS_KEY,
        )

    def make_bucket(self, name: str) -> None:
        self.client().create_bucket(Bucket=name)  # type: ignore[attr-defined]

    def env(self, url: str) -> dict[str, str]:
        """The settings that point raymall at this server (``url``: s3://bucket/prefix)."""
        return {
            "RAYMALL_MEDIA_URL": url,
            "RAYMALL_MEDIA_S3_ENDPOINT_URL": self.endpoint,
            "RAYMALL_MEDIA_S3_ACCESS_KEY_ID": ACCESS_KEY_ID,
            "RAYMALL_MEDIA_S3_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
        }


@contextmanager
def s3_server() -> Iterator[S3Server]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        port = server._server.server_port  # type: ignore[union-attr]  # bound by the OS
        yield S3Server(endpoint=f"http://127.0.0.1:{port}")
    finally:
        server.stop()
