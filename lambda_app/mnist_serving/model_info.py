"""Identify the served model for response headers: sha256, version and training run id.

``manifest.json`` beside the model file (written with it by the training step) supplies
``sha256``, ``version`` and ``run_id``; it is ignored when its ``model_file`` names another
file. The file's sha256 is computed anyway (a few ms at cold start) and must match the
manifest's, so a stale manifest cannot mislabel the model.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mnist_serving.model import file_sha256

MANIFEST_NAME = "manifest.json"
UNKNOWN = "unknown"


@dataclass(frozen=True)
class ModelInfo:
    """What the endpoint says about its model."""

    sha256: str
    version: str
    run_id: str | None

    def headers(self) -> dict[str, str]:
        """The response headers that identify the model."""
        out = {"X-Model-Sha256": self.sha256, "X-Model-Version": self.version}
        if self.run_id:
            out["X-Model-Run-Id"] = self.run_id
        return out


def describe(model_path: str | Path) -> ModelInfo:
    """Read the manifest beside ``model_path`` (if any) and check it against the file."""
    model_path = Path(model_path)
    actual = file_sha256(model_path)
    manifest = _read_manifest(model_path.parent / MANIFEST_NAME)
    if manifest.get("model_file") not in (None, model_path.name):
        manifest = {}  # it describes a sibling artifact, not this one
    claimed = manifest.get("sha256")
    if claimed is not None and str(claimed).lower() != actual:
        raise ValueError(
            f"{MANIFEST_NAME} beside MODEL_PATH={model_path} says sha256 {claimed}, the file's "
            f"is {actual}: the manifest belongs to another model"
        )
    return ModelInfo(
        sha256=actual,
        version=_header_value(manifest.get("version")) or UNKNOWN,
        run_id=_header_value(manifest.get("run_id")),
    )


def _read_manifest(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object")
    return data


def _header_value(value: Any) -> str | None:
    """A manifest value reduced to printable ASCII that is safe in an HTTP header."""
    if value is None:
        return None
    text = re.sub(r"[^\x20-\x7e]", "", str(value)).strip()[:128]
    return text or None
