"""The stack's S3: a moto server in a child process that authorizes every request with IAM.

With ``INITIAL_NO_AUTH_ACTION_COUNT`` (:data:`SERVER_ENV`) moto lets only the first few AWS
requests through unchecked: :func:`provision` spends them creating an administrator, whose key
creates the function's user, allowed exactly the template's ``Policies``. Every later request
needs a SigV4 signature by one of those keys and that user's permission. moto's random
generator is seeded, so a restarted server hands out the same keys again.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import boto3
import requests

from mnist_lambda.local_stack import procs
from mnist_lambda.local_stack.protocol import DEFAULT_REGION, make_s3_client

log = logging.getLogger("mnist_lambda.local_stack.s3")

BOOTSTRAP_CALLS = 3  # the administrator's CreateUser, PutUserPolicy, CreateAccessKey
SERVER_ENV = {"INITIAL_NO_AUTH_ACTION_COUNT": str(BOOTSTRAP_CALLS)}
ALLOW_ALL = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
}


@dataclass(frozen=True)
class KeyPair:
    """An IAM user's access key; ``client(..., **keys.as_kwargs())`` signs with it."""

    aws_access_key_id: str
    aws_secret_access_key: str

    def as_kwargs(self) -> dict[str, str]:
        return asdict(self)


@dataclass(frozen=True)
class Credentials:
    """The administrator's key (buckets, seeding) and the function's (its policies only)."""

    admin: KeyPair
    function: KeyPair


_ANYONE = KeyPair("AKIABOOTSTRAP", "bootstrap")  # signs the unchecked calls; never valid after


def _iam(url: str, region: str, keys: KeyPair) -> Any:
    return boto3.session.Session().client(
        "iam", endpoint_url=url, region_name=region, **keys.as_kwargs()
    )


def create_user(
    url: str, region: str, signer: KeyPair, name: str, policies: Sequence[Mapping[str, Any]]
) -> KeyPair:
    """Create user ``name`` allowed exactly ``policies`` (inline), signing with ``signer``."""
    iam = _iam(url, region, signer)
    iam.create_user(UserName=name)
    for i, doc in enumerate(policies):
        iam.put_user_policy(
            UserName=name, PolicyName=f"{name}-{i}", PolicyDocument=json.dumps(doc)
        )
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return KeyPair(key["AccessKeyId"], key["SecretAccessKey"])


def provision(url: str, region: str, policies: Sequence[Mapping[str, Any]]) -> Credentials:
    """The administrator (Allow * on *) and the function's user (exactly ``policies``); raise
    RuntimeError if the server does not enforce IAM afterwards (no :data:`SERVER_ENV`)."""
    admin = create_user(url, region, _ANYONE, "admin", [ALLOW_ALL])
    function = create_user(url, region, admin, "function", policies)
    stranger = _iam(url, region, _ANYONE)
    try:
        stranger.get_user(UserName="admin")
    except stranger.exceptions.ClientError:
        return Credentials(admin, function)
    raise RuntimeError(f"moto at {url} does not enforce IAM: start it with {SERVER_ENV}")


class S3Server:
    """A moto endpoint on ``host`` (127.0.0.1; ``port=0``: a free port) with IAM enforced."""

    def __init__(
        self,
        port: int = 0,
        region: str = DEFAULT_REGION,
        policies: Sequence[Mapping[str, Any]] = (),
        *,
        enforce_iam: bool = True,  # False: any credentials do anything (the handler's unit tests)
        host: str = procs.HOST,  # the Docker bridge's gateway for a function in a container
    ) -> None:
        self.port, self.region, self.policies = port, region, list(policies)
        self.host = host
        self.enforce_iam = enforce_iam
        self.proc: subprocess.Popen[bytes] | None = None
        self.credentials: Credentials | None = None
        self._seed = random.randrange(2**31)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 30.0) -> str:
        """Start moto, create the IAM users, and return the endpoint URL."""
        fixed = self.port != 0
        if fixed and procs.port_open(self.port, self.host):
            raise RuntimeError(f"S3 port {self.port} is already in use")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MOTO_"))}
        env |= SERVER_ENV if self.enforce_iam else {}
        for attempt in range(1 if fixed else 3):
            port = self.port if fixed else procs.free_port(self.host)
            cmd = [sys.executable, "-m", "moto.server", "-H", self.host, "-p", str(port)]
            proc = procs.spawn(cmd, env=env, stderr=subprocess.STDOUT)
            threading.Thread(target=self._pump, args=(proc,), daemon=True).start()
            try:
                procs.wait_port(port, proc, timeout, host=self.host)
                break
            except (RuntimeError, TimeoutError) as exc:
                procs.kill_tree(proc)
                if fixed or attempt == 2:
                    raise RuntimeError(f"moto S3 server did not start: {exc}") from exc
        self.proc, self.port = proc, port
        # /moto-api/ calls are not AWS requests: they do not use up the unchecked ones
        requests.post(f"{self.url}/moto-api/seed?a={self._seed}", timeout=10)
        if self.enforce_iam:
            self.credentials = provision(self.url, self.region, self.policies)
        iam = "enforced" if self.enforce_iam else "off"
        log.info("S3 (moto) on %s (pid %d), IAM %s", self.url, proc.pid, iam)
        return self.url

    @staticmethod
    def _pump(proc: subprocess.Popen[bytes]) -> None:
        for raw in proc.stdout or ():
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

    def stop(self) -> None:
        """Kill the moto server; its data is gone."""
        if self.proc is not None:
            procs.kill_tree(self.proc)
