"""The stack's S3: a ``moto`` server in a child process, plus a bucket.

moto runs as ``python -m moto.server`` in its own process rather than as a ``ThreadedMotoServer``
inside the supervisor: it gets its own interpreter (no GIL contention with the API front that
relays every request), its log noise stays out of the supervisor, and it is killed like every
other child (session kill, parent-death signal). Its data lives as long as that process, so a
redeploy, which only replaces function instances, keeps the bucket's objects.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import threading
from typing import Any

from mnist_lambda.local_stack import procs

log = logging.getLogger("mnist_lambda.local_stack.s3")

DUMMY_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


def make_s3_client(endpoint_url: str, region: str = "us-east-1") -> Any:
    """A boto3 S3 client for a local endpoint, with dummy credentials and no retries to AWS."""
    import boto3
    from botocore.config import Config

    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint_url,
        region_name=region,
        config=Config(retries={"max_attempts": 2}, s3={"addressing_style": "path"}),
        **DUMMY_CREDENTIALS,
    )


class S3Server:
    """A moto S3 endpoint on 127.0.0.1 (``port=0``: a free port)."""

    def __init__(self, port: int = 0, region: str = "us-east-1") -> None:
        self.port = port
        self.region = region
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{procs.HOST}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 30.0) -> str:
        """Start moto and wait until it answers; return the endpoint URL."""
        fixed = self.port != 0
        for attempt in range(1 if fixed else 3):
            port = self.port if fixed else procs.free_port()
            if fixed and procs.port_open(port):
                raise RuntimeError(f"S3 port {port} is already in use")
            env = dict(
                os.environ,
                AWS_ACCESS_KEY_ID="testing",
                AWS_SECRET_ACCESS_KEY="testing",
                AWS_DEFAULT_REGION=self.region,
                PYTHONUNBUFFERED="1",
            )
            cmd = [sys.executable, "-m", "moto.server", "-H", procs.HOST, "-p", str(port)]
            proc = procs.spawn(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            threading.Thread(
                target=self._pump, args=(proc,), daemon=True, name=f"moto-log-{port}"
            ).start()
            try:
                procs.wait_port(port, proc, timeout)
            except (RuntimeError, TimeoutError) as exc:
                procs.kill_session(proc)
                if fixed or attempt == 2:
                    raise RuntimeError(f"moto S3 server did not start: {exc}") from exc
                continue
            self.proc, self.port = proc, port
            log.info("S3 (moto) listening on %s (pid %d)", self.url, proc.pid)
            return self.url
        raise AssertionError("unreachable")

    @staticmethod
    def _pump(proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            log.debug("moto: %s", raw.decode("utf-8", "replace").rstrip())

    def create_bucket(self, bucket: str) -> None:
        """Create ``bucket`` (no error if it already exists)."""
        client = make_s3_client(self.url, self.region)
        with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
            client.create_bucket(Bucket=bucket)
        log.info("S3 bucket %s ready", bucket)

    def stop(self) -> None:
        """Kill the moto server; its data is gone."""
        if self.proc is not None:
            procs.kill_session(self.proc)
            log.info("S3 (moto) stopped")
