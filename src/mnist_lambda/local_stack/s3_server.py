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
from urllib.parse import unquote

import boto3
import requests

from mnist_lambda.local_stack import procs
from mnist_lambda.local_stack.api_front.auth import Principal
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


INVOKE_CALLERS = ("invoker", "denied")  # the API's allowed and denied callers (IAM users)


class MotoIdentities:
    """The API's callers for :class:`.api_front.auth.IamGate`: the IAM users the stack created
    (their keys), and their policies as moto's IAM holds them now (inline and attached, the
    user's and its groups'), read with the administrator's key."""

    def __init__(self, server: S3Server) -> None:
        self.server = server
        self.principals: dict[str, Principal] = {}  # access key id -> caller

    def add(self, principal: Principal) -> None:
        self.principals[principal.access_key_id] = principal

    def principal(self, access_key_id: str) -> Principal | None:
        return self.principals.get(access_key_id)

    def policies(self, principal: Principal) -> list[str]:
        assert self.server.credentials is not None
        iam = _iam(self.server.url, self.server.region, self.server.credentials.admin)
        user = principal.arn.rsplit("/", 1)[-1]
        documents = []
        owners = [("user", user)] + [
            ("group", g["GroupName"]) for g in iam.list_groups_for_user(UserName=user)["Groups"]
        ]
        for kind, name in owners:
            key = {"user": "UserName", "group": "GroupName"}[kind]
            for policy in getattr(iam, f"list_{kind}_policies")(**{key: name})["PolicyNames"]:
                doc = getattr(iam, f"get_{kind}_policy")(**{key: name, "PolicyName": policy})
                documents.append(_document(doc["PolicyDocument"]))
            attached = getattr(iam, f"list_attached_{kind}_policies")(**{key: name})
            for policy in attached["AttachedPolicies"]:
                arn = policy["PolicyArn"]
                version = iam.get_policy(PolicyArn=arn)["Policy"]["DefaultVersionId"]
                doc = iam.get_policy_version(PolicyArn=arn, VersionId=version)
                documents.append(_document(doc["PolicyVersion"]["Document"]))
        return documents


def _document(doc: Any) -> str:
    """A policy document as JSON text (boto3 hands one back decoded, or URL-encoded text)."""
    if isinstance(doc, str):
        return unquote(doc)
    return json.dumps(doc)


def _invoke_policy(method_arns: Sequence[str]) -> dict[str, Any]:
    statement = {"Effect": "Allow", "Action": "execute-api:Invoke", "Resource": list(method_arns)}
    return {"Version": "2012-10-17", "Statement": [statement]}


def allow_invoke(url: str, region: str, admin: KeyPair, method_arns: Sequence[str]) -> None:
    """Replace the allowed caller's policy: execute-api:Invoke on ``method_arns``."""
    name = INVOKE_CALLERS[0]
    _iam(url, region, admin).put_user_policy(
        UserName=name,
        PolicyName=f"{name}-0",
        PolicyDocument=json.dumps(_invoke_policy(method_arns)),
    )


def create_callers(
    url: str, region: str, admin: KeyPair, method_arns: Sequence[str]
) -> dict[str, Principal]:
    """The API's two callers: ``allowed`` (``invoker``, Allow execute-api:Invoke on
    ``method_arns``) and ``denied`` (``denied``, allowed something else only)."""
    other = {"Effect": "Allow", "Action": "s3:ListAllMyBuckets", "Resource": "*"}
    callers = {}
    for role, name, policy in (
        ("allowed", INVOKE_CALLERS[0], _invoke_policy(method_arns)),
        ("denied", INVOKE_CALLERS[1], {"Version": "2012-10-17", "Statement": [other]}),
    ):
        keys = create_user(url, region, admin, name, [policy])
        user = _iam(url, region, admin).get_user(UserName=name)["User"]
        callers[role] = Principal(
            keys.aws_access_key_id, keys.aws_secret_access_key, user["Arn"], user["UserId"]
        )
    return callers


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
