"""Load whichever model the training step shipped: ``.npz`` (numpy) or ``.onnx`` (onnxruntime).

``model/manifest.json`` names the artifact (``model_file``) and, for ONNX, its class labels;
without a manifest the model is ``model/model.npz``. Either loads without running code (no
pickle): an ``.npz`` with ``allow_pickle=False``, an ``.onnx`` as a graph of standard operators.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Protocol

import numpy as np

from mnist_serving import model as npz_model
from mnist_serving.model_info import MANIFEST_NAME

DEFAULT_MODEL_FILE = "model.npz"


class ServingModel(Protocol):
    """What the handler needs of a model."""

    classes: np.ndarray  # labels, in the order of the probability columns

    def predict(self, pixels: np.ndarray) -> np.ndarray: ...

    def predict_proba(self, pixels: np.ndarray) -> np.ndarray: ...


def _manifest(model_dir: Path) -> dict:
    try:
        data = json.loads((model_dir / MANIFEST_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def default_model_path(model_dir: Path) -> Path:
    """The artifact ``manifest.json`` in ``model_dir`` names, else ``model.npz``."""
    name = _manifest(model_dir).get("model_file")
    return model_dir / (name if isinstance(name, str) and "/" not in name else DEFAULT_MODEL_FILE)


def load_model(path: Path) -> ServingModel:
    """The model at ``path``, by its suffix; an ONNX model's classes come from its manifest."""
    if path.suffix == ".onnx":
        from mnist_serving.onnx_model import OnnxModel

        manifest = _manifest(path.parent)
        classes = (manifest.get("model") or {}).get("classes")
        if manifest.get("model_file") != path.name or not classes:
            raise ValueError(f"{path}: an ONNX model needs a {MANIFEST_NAME} with its classes")
        return OnnxModel(path, classes)
    return npz_model.load(path)
