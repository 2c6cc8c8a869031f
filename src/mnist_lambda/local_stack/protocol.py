"""What the local stack's client and its server (``mnist-lambda serve``) agree on: the files in
the state folder, the defaults, the typed deploy request, and a boto3 client for a local S3.

It imports neither side. The server writes its ready JSON to :data:`STATE_FILE_NAME`; a client
asks for a redeploy by writing a :class:`DeployRequest` beside it and sending SIGHUP.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from mnist_lambda.storage import atomic_write_json

DEFAULT_BUCKET = "mnist-lambda-local"
DEFAULT_REGION = "us-east-1"
STATE_FILE_NAME = "local_stack.json"  # the server's ready JSON, while it runs
LOG_FILE_NAME = "local_stack.log"  # its stderr, when a client started it
DEPLOY_REQUEST_NAME = "deploy_request.json"  # what the next redeploy deploys


@dataclass(frozen=True)
class DeployRequest:
    """What a redeploy changes; ``None`` (or no parameters) keeps what the stack has.
    ``parameters`` are template overrides merged into the stack's (e.g. ``MemorySize``)."""

    model_path: Path | None = None
    instances: int | None = None
    parameters: Mapping[str, str] = field(default_factory=dict)

    @property
    def changes_nothing(self) -> bool:
        return self.model_path is None and self.instances is None and not self.parameters

    def to_json(self) -> dict[str, Any]:
        """The request as :data:`DEPLOY_REQUEST_NAME` holds it."""
        model_path = str(self.model_path) if self.model_path is not None else None
        return {
            "model_path": model_path,
            "instances": self.instances,
            "parameters": dict(self.parameters),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DeployRequest:
        """The request from its JSON form (absent keys: no change)."""
        model_path, instances = data.get("model_path"), data.get("instances")
        return cls(
            model_path=Path(model_path) if model_path is not None else None,
            instances=int(instances) if instances is not None else None,
            parameters={str(k): str(v) for k, v in (data.get("parameters") or {}).items()},
        )

    def write(self, state_dir: Path) -> None:
        """Leave the request in ``state_dir`` for the server's next redeploy."""
        atomic_write_json(Path(state_dir) / DEPLOY_REQUEST_NAME, self.to_json())

    @classmethod
    def take(cls, state_dir: Path) -> DeployRequest:
        """The request left in ``state_dir`` (removed), or an empty one."""
        path = Path(state_dir) / DEPLOY_REQUEST_NAME
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return cls()
        path.unlink(missing_ok=True)
        return cls.from_json(data)


def make_s3_client(
    endpoint_url: str, region: str = DEFAULT_REGION, credentials: Mapping[str, str] | None = None
) -> Any:
    """A boto3 S3 client for a local endpoint (path-style, two attempts at most)."""
    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint_url,
        region_name=region,
        config=Config(retries={"max_attempts": 2}, s3={"addressing_style": "path"}),
        **dict(credentials or {"aws_access_key_id": "testing", "aws_secret_access_key": "x"}),
    )
