"""What the function image needs on top of ``lambda_app/requirements.txt`` for a given model.

An ONNX model needs onnxruntime (and what it imports); the ``.npz`` model needs nothing more.
The export writes :data:`FILE_NAME` beside ``model.onnx``; the Dockerfile installs it when it is
there, and the local stack's task root is built from both files, as the image is.
"""

from __future__ import annotations

import importlib.metadata

FILE_NAME = "model-requirements.txt"
ONNX_PACKAGES = ("onnxruntime", "flatbuffers", "packaging", "protobuf")
"""onnxruntime and its requirements (numpy is in lambda_app/requirements.txt already)."""


def onnx_pins() -> list[str]:
    """``name==version`` of what an ONNX model needs, at the versions of poetry.lock."""
    return [f"{name}=={importlib.metadata.version(name)}" for name in ONNX_PACKAGES]


def onnx_requirements() -> str:
    """The requirements file of an ONNX model (:func:`onnx_pins`)."""
    header = "# Installed into the image beside lambda_app/requirements.txt: the ONNX runtime.\n"
    return header + "\n".join(onnx_pins()) + "\n"
