"""The stack's S3: a moto server in a child process that checks IAM, and a bucket.

moto runs as ``python -m moto.server`` (the one way the project runs moto, tests included): its
own interpreter, no GIL contention with the API front, killed like every other child. It
authorizes every request against IAM (:mod:`.iam`): the administrator's key for the notebooks
and tests, the function's key for the function. Its random generator is seeded, so a restarted
server hands out the same keys again. Its data lives as long as the process; a redeploy keeps it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import requests

from mnist_lambda.local_stack import iam, procs
from mnist_lambda.local_stack.client import make_s3_client

log = logging.getLogger("mnist_lambda.local_stack.s3")


class S3Server:
    """A moto endpoint on 127.0.0.1 (``port=0``: a free port) with IAM enforced."""

    def __init__(
        self, port: int = 0, region: str = "us-east-1", policies: Sequence[Mapping[str, Any]] = ()
    ) -> None:
        self.port = port
        self.region = region
        self.policies = list(policies)
        self.proc: subprocess.Popen[bytes] | None = None
        self.credentials: iam.Credentials | None = None
        self._seed = random.randrange(2**31)

    @property
    def url(self) -> str:
        return f"http://{procs.HOST}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 30.0) -> str:
        """Start moto, create the IAM users, and return the endpoint URL."""
        fixed = self.port != 0
        for attempt in range(1 if fixed else 3):
            port = self.port if fixed else procs.free_port()
            if fixed and procs.port_open(port):
                raise RuntimeError(f"S3 port {port} is already in use")
            env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MOTO_"))}
            env.update(PYTHONUNBUFFERED="1", **iam.SERVER_ENV)
            cmd = [sys.executable, "-m", "moto.server", "-H", procs.HOST, "-p", str(port)]
            proc = procs.spawn(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            threading.Thread(target=self._pump, args=(proc,), daemon=True).start()
            try:
                procs.wait_port(port, proc, timeout)
            except (RuntimeError, TimeoutError) as exc:
                procs.kill_tree(proc)
                if fixed or attempt == 2:
                    raise RuntimeError(f"moto S3 server did not start: {exc}") from exc
                continue
            self.proc, self.port = proc, port
            # /moto-api/ calls are not AWS requests: they do not use up the unchecked ones
            requests.post(f"{self.url}/moto-api/seed?a={self._seed}", timeout=10)
            self.credentials = iam.provision(self.url, self.region, self.policies)
            log.info("S3 (moto, IAM enforced) on %s (pid %d)", self.url, proc.pid)
            return self.url
        raise AssertionError("unreachable")

    @staticmethod
    def _pump(proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            log.debug("moto: %s", raw.decode("utf-8", "replace").rstrip())

    def admin_client(self) -> Any:
        """A boto3 S3 client signed with the administrator's key."""
        assert self.credentials is not None
        return make_s3_client(self.url, self.region, self.credentials.admin.as_kwargs())

    def create_bucket(self, bucket: str) -> None:
        """Create ``bucket`` (no error if it already exists)."""
        client = self.admin_client()
        with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
            client.create_bucket(Bucket=bucket)
        log.info("S3 bucket %s ready", bucket)

    def stop(self) -> None:
        """Kill the moto server; its data is gone."""
        if self.proc is not None:
            procs.kill_tree(self.proc)
            log.info("S3 (moto) stopped")
