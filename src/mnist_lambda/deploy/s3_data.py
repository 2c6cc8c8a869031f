"""Put the test features into S3 as ``.npy`` with an integrity checksum, on AWS or locally."""

from __future__ import annotations

import base64
import hashlib
import io
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Upload:
    """Where an array went and how to check it."""

    bucket: str
    key: str
    bytes: int
    sha256: str
    rows: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def ensure_bucket(client: Any, bucket: str, region: str) -> bool:
    """Create ``bucket`` if it is missing; return True when it was created.

    us-east-1 rejects an explicit ``LocationConstraint``; every other region needs one.
    """
    from botocore.exceptions import ClientError

    try:
        client.head_bucket(Bucket=bucket)
        return False
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket", "NotFound"):
            raise
    kwargs: dict[str, Any] = {"Bucket": bucket}
    if region != "us-east-1":
        kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
    client.create_bucket(**kwargs)
    return True


def npy_bytes(array: np.ndarray) -> bytes:
    """An array as ``.npy`` bytes (never pickled)."""
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    return buf.getvalue()


def upload_array(client: Any, bucket: str, key: str, array: np.ndarray) -> Upload:
    """Upload ``array`` as ``.npy``; S3 verifies the SHA-256 checksum sent with it."""
    body = npy_bytes(array)
    digest = hashlib.sha256(body)
    client.put_object(
        Bucket=bucket,
        Key=key,
        Body=body,
        ContentType="application/x-npy",
        ChecksumSHA256=base64.b64encode(digest.digest()).decode(),
        Metadata={"sha256": digest.hexdigest(), "rows": str(len(array))},
    )
    upload = Upload(bucket, key, len(body), digest.hexdigest(), len(array))
    verify_upload(client, upload)
    return upload


def verify_upload(client: Any, upload: Upload) -> None:
    """Read the object back and compare its sha256 with what was sent."""
    body = client.get_object(Bucket=upload.bucket, Key=upload.key)["Body"].read()
    got = hashlib.sha256(body).hexdigest()
    if got != upload.sha256:
        raise RuntimeError(
            f"s3://{upload.bucket}/{upload.key}: sha256 {got} differs from the uploaded "
            f"{upload.sha256}; upload again"
        )


def list_objects(client: Any, bucket: str, prefix: str = "") -> list[dict[str, Any]]:
    """Key, size and last-modified time of every object under ``prefix``."""
    rows = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            rows.append(
                {
                    "key": obj["Key"],
                    "bytes": obj["Size"],
                    "last_modified": obj["LastModified"].isoformat(timespec="seconds"),
                }
            )
    return rows


def empty_and_delete_bucket(client: Any, bucket: str) -> int:
    """Delete every object (and version) in ``bucket``, then the bucket; return objects removed."""
    removed = 0
    paginator = client.get_paginator("list_object_versions")
    for page in paginator.paginate(Bucket=bucket):
        items = [
            {"Key": v["Key"], "VersionId": v["VersionId"]}
            for v in page.get("Versions", []) + page.get("DeleteMarkers", [])
        ]
        if items:
            client.delete_objects(Bucket=bucket, Delete={"Objects": items, "Quiet": True})
            removed += len(items)
    client.delete_bucket(Bucket=bucket)
    return removed
