"""The client's auth: an x-api-key header, or a SigV4 signature by botocore that a recomputation
over what was sent reproduces (the local front's check is tests/e2e/local_stack)."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest
import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from mnist_lambda.client import EndpointAuth, EndpointError

KEYS = {"aws_access_key_id": "AKIAEXAMPLE", "aws_secret_access_key": "secret/example"}
URL = "https://abc123.execute-api.eu-west-1.amazonaws.com/dev/predict"


def _prepared(auth: EndpointAuth) -> requests.PreparedRequest:
    request = requests.Request("POST", URL, json={"bucket": "b", "key": "k.npy"}, auth=auth)
    return request.prepare()


def test_api_key_goes_in_its_header_and_not_in_repr() -> None:
    prepared = _prepared(EndpointAuth.key("s3cr3t-value"))
    assert prepared.headers["x-api-key"] == "s3cr3t-value"
    assert "Authorization" not in prepared.headers
    assert "s3cr3t" not in repr(EndpointAuth.key("s3cr3t-value"))


def test_sigv4_signature_is_reproduced_from_what_was_sent() -> None:
    prepared = _prepared(EndpointAuth.iam("eu-west-1", KEYS))
    header = prepared.headers["Authorization"]
    found = re.fullmatch(
        r"AWS4-HMAC-SHA256 Credential=(\S+?)/(\d{8})/([\w-]+)/([\w-]+)/aws4_request, "
        r"SignedHeaders=([\w;-]+), Signature=([0-9a-f]{64})",
        header,
    )
    assert found, header
    key_id, date, region, service, signed, signature = found.groups()
    assert (key_id, region, service) == ("AKIAEXAMPLE", "eu-west-1", "execute-api")
    assert set(signed.split(";")) >= {"host", "x-amz-date", "content-type"}
    amz_date = prepared.headers["X-Amz-Date"]
    assert amz_date.startswith(date)
    # recompute over the request as sent, at the signing time
    again = AWSRequest(
        method="POST",
        url=URL,
        data=prepared.body,
        headers={"Content-Type": prepared.headers["Content-Type"], "X-Amz-Date": amz_date},
    )
    again.context["timestamp"] = amz_date
    signer = SigV4Auth(Credentials(KEYS["aws_access_key_id"], KEYS["aws_secret_access_key"]),
                       "execute-api", "eu-west-1")  # fmt: skip
    canonical = signer.canonical_request(again)
    assert signer.signature(signer.string_to_sign(again, canonical), again) == signature
    # and a different body would not give it
    again.data = b'{"bucket": "b", "key": "other.npy"}'
    canonical = signer.canonical_request(again)
    assert signer.signature(signer.string_to_sign(again, canonical), again) != signature
    now = dt.datetime.now(dt.UTC)
    signed_at = dt.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
    assert abs((now - signed_at).total_seconds()) < 60


def test_no_credentials_is_an_error_that_says_what_to_set(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", raising=False)
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", raising=False)
    with pytest.raises(EndpointError, match="AWS_PROFILE"):
        EndpointAuth.iam("us-east-1")


def test_the_credential_chain_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAFROMENV")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    prepared = _prepared(EndpointAuth.iam("eu-west-1"))
    assert "Credential=AKIAFROMENV/" in prepared.headers["Authorization"]


def test_bad_auth_values_are_refused() -> None:
    with pytest.raises(ValueError):
        EndpointAuth("oauth")
    with pytest.raises(ValueError):
        EndpointAuth("api_key")
