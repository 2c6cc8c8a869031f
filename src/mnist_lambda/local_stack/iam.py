"""IAM for the local stack: moto's S3 authorizes each request against the caller's IAM policies.

moto's ``INITIAL_NO_AUTH_ACTION_COUNT`` (read from the environment at import; default infinite)
lets that many AWS requests through unchecked; every later one needs a valid SigV4 signature by an
IAM user's key and that user's permission. Start moto with :data:`SERVER_ENV`, then call
:func:`provision` before anything else talks to it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

BOOTSTRAP_CALLS = 3  # the administrator's CreateUser, PutUserPolicy, CreateAccessKey

SERVER_ENV = {"INITIAL_NO_AUTH_ACTION_COUNT": str(BOOTSTRAP_CALLS)}  # for python -m moto.server

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


def _iam(endpoint_url: str, region: str, keys: KeyPair) -> Any:
    import boto3

    return boto3.session.Session().client(
        "iam", endpoint_url=endpoint_url, region_name=region, **keys.as_kwargs()
    )


def create_user(
    endpoint_url: str,
    region: str,
    signer: KeyPair,
    name: str,
    policies: Sequence[Mapping[str, Any]],
) -> KeyPair:
    """Create user ``name`` allowed exactly ``policies`` (inline), signing with ``signer``."""
    iam = _iam(endpoint_url, region, signer)
    iam.create_user(UserName=name)
    for i, doc in enumerate(policies):
        iam.put_user_policy(
            UserName=name, PolicyName=f"{name}-{i}", PolicyDocument=json.dumps(doc)
        )
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return KeyPair(key["AccessKeyId"], key["SecretAccessKey"])


def provision(
    endpoint_url: str,
    region: str,
    policies: Sequence[Mapping[str, Any]],
    function_user: str = "predict-function",
) -> Credentials:
    """Create the administrator (Allow * on *) and the function user, allowed exactly ``policies``.

    Raises RuntimeError if the server does not enforce IAM afterwards (no :data:`SERVER_ENV`).
    """
    admin = create_user(endpoint_url, region, _ANYONE, "admin", [ALLOW_ALL])
    function = create_user(endpoint_url, region, admin, function_user, policies)
    stranger = _iam(endpoint_url, region, _ANYONE)
    try:
        stranger.get_user(UserName="admin")
    except stranger.exceptions.ClientError:
        return Credentials(admin, function)
    raise RuntimeError(f"moto at {endpoint_url} does not enforce IAM: start it with {SERVER_ENV}")
