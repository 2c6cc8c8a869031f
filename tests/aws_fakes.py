"""The fake AWS environment the in-process handler runs in, and a test-side client on moto."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def fake_aws_env(config_dir: Path, s3_endpoint: str) -> dict[str, str]:
    """Dummy credentials in us-east-1, S3 at ``s3_endpoint``, no user AWS config, no proxy
    for loopback: what the handler's tests run with."""
    return {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "AWS_CONFIG_FILE": str(config_dir / "config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(config_dir / "credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_ENDPOINT_URL_S3": s3_endpoint,
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
    }


def moto_client(endpoint: str, *buckets: str) -> Any:
    """A test-side S3 client on moto (explicit settings, no env, one attempt) with ``buckets``
    created."""
    import boto3
    from botocore.config import Config

    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"max_attempts": 1}, proxies={}),
    )
    for bucket in buckets:
        client.create_bucket(Bucket=bucket)
    return client
