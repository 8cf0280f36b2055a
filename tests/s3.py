"""A real S3 API on this machine: moto's server on 127.0.0.1, a bucket made with boto3.

Ray's own persistence tests do the same (``ray/_common/test_utils.py``: ``simulate_s3_bucket``).
Credentials are dummies moto accepts; they reach Ray's processes through the environment (the
job's runtime env), never through a URI. The endpoint and region are passed explicitly, or
pyarrow would ask real AWS where the bucket lives.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

REGION = "us-east-1"
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_EC2_METADATA_DISABLED": "true",
}


@dataclass(frozen=True)
class Bucket:
    name: str
    endpoint: str

    def uri(self, prefix: str = "") -> str:
        """``s3://bucket/prefix?region=...&endpoint_override=...`` as users write it."""
        path = f"{self.name}/{prefix}".rstrip("/")
        return f"s3://{path}?region={REGION}&endpoint_override={self.endpoint}"

    def client(self):
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def keys(self, prefix: str = "") -> list[str]:
        """Every object key under ``prefix``."""
        paginator = self.client().get_paginator("list_objects_v2")
        return [
            item["Key"]
            for page in paginator.paginate(Bucket=self.name, Prefix=prefix)
            for item in page.get("Contents", [])
        ]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def moto_bucket(monkeypatch=None) -> Iterator[Bucket]:
    """A moto S3 server on a free port with one fresh bucket; stopped on exit."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        bucket = Bucket(f"lie-ray-{uuid.uuid4().hex[:12]}", f"http://127.0.0.1:{port}")
        bucket.client().create_bucket(Bucket=bucket.name)  # must exist before anything writes
        yield bucket
    finally:
        server.stop()
