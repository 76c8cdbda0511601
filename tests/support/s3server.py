"""An S3-compatible server in its own process on 127.0.0.1, for the S3 backend's tests.

The server is moto's S3 emulator (`moto_server`, from the dev extras) speaking the S3 HTTP API;
the code under test talks to it over a real socket with the real client, as it would to MinIO
or AWS. `SkewedS3` answers every request the way S3 answers a host whose clock is off.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tests.support.stack import _wait_for, env_python, free_port

ACCESS_KEY = "testkey"
SECRET_KEY = "testsecret"


@dataclass
class S3Server:
    """A `moto_server` process; buckets are made with `make_bucket`."""

    folder: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    # e.g. INITIAL_NO_AUTH_ACTION_COUNT: moto checks signatures after that many requests.
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        """Return the endpoint URL."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        self.folder.mkdir(parents=True, exist_ok=True)
        binary = env_python("core").parent / "moto_server"
        log = open(self.folder / "s3.log", "ab")  # noqa: SIM115 - the process owns it
        self.proc = subprocess.Popen(
            [str(binary), "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **self.extra_env},
        )
        _wait_for(lambda: _accepts(self.port), 60, f"S3 server on port {self.port}", self.proc)

    def stop(self) -> None:
        """Stop the server."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)

    def client(self) -> object:
        """Return a boto3 S3 client for this server (for set-up, never for the code under test)."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.url,
            region_name="us-east-1",
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
        )

    def make_bucket(self, name: str) -> str:
        """Create a bucket and return its name."""
        self.client().create_bucket(Bucket=name)  # type: ignore[attr-defined]
        return name

    def env(self, bucket: str, prefix: str = "") -> dict[str, str]:
        """Return the JAYAVATAR_* variables that point storage at `bucket` on this server."""
        return {
            "JAYAVATAR_STORAGE": "s3",
            "JAYAVATAR_S3_ENDPOINT_URL": self.url,
            "JAYAVATAR_S3_BUCKET": bucket,
            "JAYAVATAR_S3_REGION": "us-east-1",
            "JAYAVATAR_S3_ACCESS_KEY_ID": ACCESS_KEY,
            "JAYAVATAR_S3_SECRET_ACCESS_KEY": SECRET_KEY,
            "JAYAVATAR_S3_PREFIX": prefix,
        }


class _Skewed(BaseHTTPRequestHandler):
    BODY = (
        b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>RequestTimeTooSkewed</Code>'
        b"<Message>The difference between the request time and the current time is too "
        b"large.</Message></Error>"
    )

    def _refuse(self) -> None:
        self.send_response(403)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(self.BODY)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(self.BODY)

    do_GET = do_PUT = do_HEAD = do_POST = do_DELETE = _refuse

    def log_message(self, *args: object) -> None:
        """Stay quiet."""


def serve_skewed(port: int) -> None:
    """Answer every request on `port` as S3 answers a skewed clock (run in its own process)."""
    ThreadingHTTPServer(("127.0.0.1", port), _Skewed).serve_forever()


class SkewedS3:
    """A process that refuses every request with RequestTimeTooSkewed."""

    def __init__(self) -> None:
        self.port = free_port()
        code = f"from tests.support.s3server import serve_skewed; serve_skewed({self.port})"
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[2]
        )
        _wait_for(lambda: _accepts(self.port), 30, "skewed S3 endpoint", self.proc)

    @property
    def url(self) -> str:
        """Return the endpoint URL."""
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        """Stop the process."""
        self.proc.terminate()
        self.proc.wait(10)


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), 0.5):
            return True
    except OSError:
        return False


__all__ = ["S3Server", "SkewedS3"]
