"""Uploading to S3 over HTTP (a moto server on loopback), and the AWS helpers' commands."""

from __future__ import annotations

import boto3
import numpy as np
import pytest

from mnist_lambda import pricing
from mnist_lambda.client import latency_summary
from mnist_lambda.deploy import aws_deploy, s3_data


@pytest.fixture(scope="module")
def s3_url(moto_endpoint: str) -> str:
    return moto_endpoint


def client(url: str, region: str = "us-east-1"):
    return boto3.client(
        "s3",
        endpoint_url=url,
        region_name=region,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


@pytest.mark.parametrize("region", ["us-east-1", "eu-west-1"])
def test_bucket_is_created_once_in_any_region(s3_url: str, region: str) -> None:
    s3 = client(s3_url, region)
    bucket = f"data-{region}"
    assert s3_data.ensure_bucket(s3, bucket, region) is True
    assert s3_data.ensure_bucket(s3, bucket, region) is False
    location = s3.get_bucket_location(Bucket=bucket)["LocationConstraint"]
    assert location == (None if region == "us-east-1" else region)


def test_upload_round_trip_with_checksum(s3_url: str, mnist_xy) -> None:
    s3 = client(s3_url)
    s3_data.ensure_bucket(s3, "uploads", "us-east-1")
    rows = mnist_xy[0][:100]
    up = s3_data.upload_array(s3, "uploads", "mnist/x.npy", rows)
    assert up.rows == 100 and up.bytes == 100 * 784 + 128
    body = s3.get_object(Bucket="uploads", Key="mnist/x.npy")["Body"].read()
    back = np.load(__import__("io").BytesIO(body), allow_pickle=False)
    assert back.dtype == np.uint8 and np.array_equal(back, rows)
    head = s3.head_object(Bucket="uploads", Key="mnist/x.npy", ChecksumMode="ENABLED")
    assert head["Metadata"]["sha256"] == up.sha256
    assert [o["key"] for o in s3_data.list_objects(s3, "uploads")] == ["mnist/x.npy"]


def test_corrupted_object_is_detected(s3_url: str) -> None:
    s3 = client(s3_url)
    s3_data.ensure_bucket(s3, "corrupted", "us-east-1")
    up = s3_data.upload_array(s3, "corrupted", "x.npy", np.zeros((2, 784), np.uint8))
    s3.put_object(Bucket="corrupted", Key="x.npy", Body=b"something else")
    with pytest.raises(RuntimeError, match="differs from the uploaded"):
        s3_data.verify_upload(s3, up)


def test_empty_and_delete_bucket(s3_url: str) -> None:
    s3 = client(s3_url)
    s3_data.ensure_bucket(s3, "deleted-bucket", "us-east-1")
    for i in range(3):
        s3.put_object(Bucket="deleted-bucket", Key=f"k{i}", Body=b"x")
    assert s3_data.empty_and_delete_bucket(s3, "deleted-bucket") == 3
    assert "deleted-bucket" not in [b["Name"] for b in s3.list_buckets()["Buckets"]]


def test_deploy_command_is_non_interactive() -> None:
    cmd = aws_deploy.deploy_command("st", "eu-west-1", {"Stage": "dev", "MemorySize": ""})
    assert cmd[1] == "deploy" and "--no-confirm-changeset" in cmd
    assert cmd[cmd.index("--parameter-overrides") + 1 :] == ["Stage=dev"]
    assert "--resolve-image-repos" in cmd and "CAPABILITY_IAM" in cmd
    assert aws_deploy.delete_command("st", "eu-west-1")[-1] == "--no-prompts"


def test_cost_estimate_arithmetic() -> None:
    # 100 ms at 1024 MB for 2,000 rows: 500 requests per million predictions
    cost = pricing.usd_per_million_predictions(0.1, 1024, 2000)
    assert cost["lambda"] == pytest.approx(500 * (0.1 * 0.0000166667 + 0.2e-6))
    assert cost["api_gateway"] == pytest.approx(500 * 3.5e-6)
    # billed duration rounds up to the millisecond
    assert pricing.usd_per_million_predictions(0.1001, 1024, 2000)["lambda"] > cost["lambda"]
    assert latency_summary([1.0, 2.0, 3.0])["p50"] == 2.0
