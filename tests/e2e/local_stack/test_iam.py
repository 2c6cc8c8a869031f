"""The local S3 enforces the function's IAM policy (moto server with IAM-like access control).

The stack's own S3 server (:class:`S3Server`, a moto child on a free 127.0.0.1 port) with the
template's real ``Policies``; every call below is a signed boto3 request that moto authorizes.
"""

from __future__ import annotations

import datetime
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any
from unittest import mock

import boto3
import pytest
import requests
from botocore.config import Config
from botocore.exceptions import ClientError
from repo_paths import TEMPLATE

from mnist_lambda.local_stack import s3_server as iam
from mnist_lambda.local_stack.s3_server import S3Server
from mnist_lambda.template.reader import load_stack_spec

REGION = "us-east-1"
BUCKET = "mnist-data"  # S3 (and moto) reject names shorter than 3 characters
BODY = b"0123456789"
PATH_STYLE = Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1})


def template_policies() -> tuple[Any, ...]:
    params = {"DataBucketName": BUCKET, "DataKeyPrefix": "inputs/"}  # OutputKeyPrefix: default
    return load_stack_spec(TEMPLATE, params).functions["PredictFunction"].policies


@pytest.fixture(scope="module")
def stack() -> Iterator[tuple[str, iam.Credentials]]:
    server = S3Server(region=REGION, policies=template_policies())
    server.start()
    try:
        assert server.credentials is not None
        admin = s3(server.url, server.credentials.admin)
        admin.create_bucket(Bucket=BUCKET)
        for key in ("inputs/x.npy", "secret/x.npy", "predictions/old.json"):
            admin.put_object(Bucket=BUCKET, Key=key, Body=BODY)
        yield server.url, server.credentials
    finally:
        server.stop()


def s3(url: str, keys: iam.KeyPair, config: Config = PATH_STYLE, region: str = REGION) -> Any:
    return boto3.session.Session().client(
        "s3", endpoint_url=url, region_name=region, config=config, **keys.as_kwargs()
    )


def iam_client(url: str, keys: iam.KeyPair) -> Any:
    return boto3.session.Session().client(
        "iam", endpoint_url=url, region_name=REGION, **keys.as_kwargs()
    )


def refused(call: Any, **kwargs: Any) -> tuple[int, str]:
    """(HTTP status, error code) of a call that must fail."""
    with pytest.raises(ClientError) as info:
        call(**kwargs)
    resp = info.value.response
    return resp["ResponseMetadata"]["HTTPStatusCode"], resp["Error"]["Code"]


def test_function_reads_only_under_the_data_prefix(stack: tuple[str, iam.Credentials]) -> None:
    url, creds = stack
    fn = s3(url, creds.function)
    assert fn.get_object(Bucket=BUCKET, Key="inputs/x.npy")["Body"].read() == BODY
    assert fn.head_object(Bucket=BUCKET, Key="inputs/x.npy")["ContentLength"] == len(BODY)
    assert refused(fn.get_object, Bucket=BUCKET, Key="secret/x.npy") == (403, "AccessDenied")
    assert refused(fn.get_object, Bucket=BUCKET, Key="predictions/old.json") == (
        403,
        "AccessDenied",
    )
    assert refused(fn.head_object, Bucket=BUCKET, Key="secret/x.npy") == (403, "403")


def test_function_writes_only_under_the_output_prefix(stack: tuple[str, iam.Credentials]) -> None:
    url, creds = stack
    fn, admin = s3(url, creds.function), s3(url, creds.admin)
    fn.put_object(Bucket=BUCKET, Key="predictions/p.json", Body=b"[7]")
    assert admin.get_object(Bucket=BUCKET, Key="predictions/p.json")["Body"].read() == b"[7]"
    for key in ("inputs/p.json", "secret/p.json", "p.json"):
        assert refused(fn.put_object, Bucket=BUCKET, Key=key, Body=b"x") == (403, "AccessDenied")


def test_function_deletes_nothing(stack: tuple[str, iam.Credentials]) -> None:
    url, creds = stack
    fn, admin = s3(url, creds.function), s3(url, creds.admin)
    for key in ("inputs/x.npy", "predictions/old.json", "secret/x.npy"):
        assert refused(fn.delete_object, Bucket=BUCKET, Key=key) == (403, "AccessDenied")
    # DeleteObjects answers 200 with a per-key AccessDenied, and deletes nothing.
    out = fn.delete_objects(Bucket=BUCKET, Delete={"Objects": [{"Key": "inputs/x.npy"}]})
    assert [e["Code"] for e in out["Errors"]] == ["AccessDenied"]
    assert admin.head_object(Bucket=BUCKET, Key="inputs/x.npy")["ContentLength"] == len(BODY)


def test_function_lists_its_bucket_only_and_cannot_touch_iam(
    stack: tuple[str, iam.Credentials],
) -> None:
    url, creds = stack
    fn = s3(url, creds.function)
    assert fn.list_objects_v2(Bucket=BUCKET, Prefix="inputs/")["KeyCount"] == 1
    assert refused(fn.list_buckets) == (403, "AccessDenied")
    assert refused(fn.create_bucket, Bucket="another-bucket") == (403, "AccessDenied")
    fn_iam = iam_client(url, creds.function)
    assert refused(fn_iam.create_user, UserName="evil") == (403, "AccessDenied")
    assert refused(fn_iam.list_users) == (403, "AccessDenied")


def test_missing_key_under_the_prefix_is_404(stack: tuple[str, iam.Credentials]) -> None:
    url, creds = stack
    fn = s3(url, creds.function)
    assert refused(fn.get_object, Bucket=BUCKET, Key="inputs/nope.npy") == (404, "NoSuchKey")
    assert refused(fn.head_object, Bucket=BUCKET, Key="inputs/nope.npy") == (404, "404")


def test_without_list_bucket_moto_still_answers_404(stack: tuple[str, iam.Credentials]) -> None:
    """moto does NOT reproduce S3's 403 for a missing key without s3:ListBucket.

    Real S3 answers GetObject/HeadObject of a missing key 403 AccessDenied unless the caller may
    ListBucket; moto authorizes s3:GetObject on the key ARN and then says NoSuchKey regardless.
    What moto does enforce of that statement: ListObjects is refused without it.
    """
    url, creds = stack
    policies = [
        {**doc, "Statement": [s for s in doc["Statement"] if s["Action"] != "s3:ListBucket"]}
        for doc in template_policies()
    ]
    assert sum(len(d["Statement"]) for d in policies) == 2
    keys = iam.create_user(url, REGION, creds.admin, "no-list", policies)
    fn = s3(url, keys)
    assert fn.get_object(Bucket=BUCKET, Key="inputs/x.npy")["Body"].read() == BODY
    assert refused(fn.get_object, Bucket=BUCKET, Key="inputs/nope.npy") == (404, "NoSuchKey")
    assert refused(fn.head_object, Bucket=BUCKET, Key="inputs/nope.npy") == (404, "404")
    assert refused(fn.list_objects_v2, Bucket=BUCKET) == (403, "AccessDenied")


def test_admin_can_do_everything(stack: tuple[str, iam.Credentials]) -> None:
    url, creds = stack
    admin = s3(url, creds.admin)
    admin.put_object(Bucket=BUCKET, Key="secret/tmp", Body=b"t")
    assert admin.get_object(Bucket=BUCKET, Key="secret/tmp")["Body"].read() == b"t"
    admin.delete_object(Bucket=BUCKET, Key="secret/tmp")
    assert BUCKET in [b["Name"] for b in admin.list_buckets()["Buckets"]]
    admin.create_bucket(Bucket="scratch-bucket")
    admin.delete_bucket(Bucket="scratch-bucket")
    users = {u["UserName"] for u in iam_client(url, creds.admin).list_users()["Users"]}
    assert {"admin", "function"} <= users


def test_unknown_or_forged_credentials_are_refused(stack: tuple[str, iam.Credentials]) -> None:
    url, creds = stack
    unknown = s3(url, iam.KeyPair("AKIAUNKNOWNKEY000000", "secret"))
    assert refused(unknown.get_object, Bucket=BUCKET, Key="inputs/x.npy") == (
        403,
        "InvalidAccessKeyId",
    )
    forged = s3(url, iam.KeyPair(creds.function.aws_access_key_id, "not-the-secret"))
    assert refused(forged.get_object, Bucket=BUCKET, Key="inputs/x.npy") == (
        403,
        "SignatureDoesNotMatch",
    )
    bootstrap = iam_client(
        url, iam.KeyPair("AKIABOOTSTRAP", "bootstrap")
    )  # unchecked calls: spent
    assert refused(bootstrap.create_user, UserName="late") == (403, "InvalidClientTokenId")
    with pytest.raises(urllib.error.HTTPError) as info:  # unsigned: 403, empty body
        urllib.request.urlopen(f"{url}/{BUCKET}/inputs/x.npy", timeout=10)
    assert info.value.code == 403


def test_handler_client_works_under_enforcement(stack: tuple[str, iam.Credentials]) -> None:
    """The handler's own client config and helpers: HEAD + GET, ranged GET, PUT, error mapping."""
    from mnist_serving import s3io
    from mnist_serving.budget import Budget
    from mnist_serving.errors import Forbidden, NotFound

    url, creds = stack
    for config in (s3io.CLIENT_CONFIG, s3io.CLIENT_CONFIG.merge(PATH_STYLE)):
        client = s3(url, creds.function, config)
        got = s3io.fetch_object(client, BUCKET, "inputs/x.npy", max_bytes=100, budget=Budget())
        assert got == BODY
        ranged = client.get_object(Bucket=BUCKET, Key="inputs/x.npy", Range="bytes=2-4")
        assert ranged["ResponseMetadata"]["HTTPStatusCode"] == 206
        assert ranged["Body"].read() == b"234"
        npy = b"\x93NUMPY" * 1000
        s3io.put_object(client, BUCKET, "predictions/h.npy", npy, "x-npy", budget=Budget())
        with pytest.raises(Forbidden):
            s3io.fetch_object(client, BUCKET, "secret/x.npy", max_bytes=100, budget=Budget())
        with pytest.raises(NotFound):
            s3io.fetch_object(client, BUCKET, "inputs/none", max_bytes=100, budget=Budget())
        with pytest.raises(Forbidden):
            s3io.put_object(client, BUCKET, "inputs/h.npy", b"x", "x", budget=Budget())


def test_what_moto_does_not_check(stack: tuple[str, iam.Credentials]) -> None:
    """Pinned gaps: no clock-skew check, any signing region, presigned URLs fail (500)."""
    url, creds = stack
    real = datetime.datetime

    class Year2001(real):
        @classmethod
        def now(cls, tz: Any = None) -> Any:
            return real(2001, 1, 1, tzinfo=tz)

        @classmethod
        def utcnow(cls) -> Any:
            return real(2001, 1, 1)

    fn = s3(url, creds.function)
    with mock.patch("botocore.auth.datetime.datetime", Year2001):  # S3 says RequestTimeTooSkewed
        assert fn.get_object(Bucket=BUCKET, Key="inputs/x.npy")["Body"].read() == BODY
    other_region = s3(url, creds.function, region="eu-west-1")
    assert other_region.get_object(Bucket=BUCKET, Key="inputs/x.npy")["Body"].read() == BODY
    presigned = fn.generate_presigned_url(
        "get_object", Params={"Bucket": BUCKET, "Key": "inputs/x.npy"}
    )
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(presigned, timeout=10)
    assert info.value.code == 500  # moto reads the Authorization header, which is absent


def test_provision_refuses_a_server_that_does_not_enforce() -> None:
    server = S3Server(region=REGION)
    server.start()
    try:  # wipe it and switch enforcement off: every request is let through unchecked
        requests.post(f"{server.url}/moto-api/reset", timeout=10)
        requests.post(f"{server.url}/moto-api/reset-auth", data=b"inf", timeout=10)
        with pytest.raises(RuntimeError, match="does not enforce IAM"):
            iam.provision(server.url, REGION, template_policies())
    finally:
        server.stop()
