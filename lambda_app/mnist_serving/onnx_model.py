"""A classifier exported to ONNX (skl2onnx), served with onnxruntime.

An ``.onnx`` file is data: a graph of standard operators, no code runs when it loads. Only the
standard operator domains are accepted (``ai.onnx`` and ``ai.onnx.ml``): a model that declares
another (onnxruntime's ``com.microsoft`` contrib operators, a custom op library) is refused
before a session is created. The session is created once per environment, with as many threads
as the environment has CPU (Lambda's share grows with ``MemorySize``: one vCPU per 1,769 MB).

onnxruntime is imported here only: a ``.npz`` model never pays for it.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from mnist_serving.schema import N_PIXELS

STANDARD_DOMAINS = frozenset({"", "ai.onnx", "ai.onnx.ml"})
FULL_VCPU_MB = 1769
"""Lambda's MemorySize for one full vCPU. A copy of ``mnist_lambda.aws_limits.MB_PER_VCPU`` (the
image does not ship the project); tests/unit/test_platform_facts.py proves the two equal."""


def operator_domains(model_bytes: bytes) -> set[str]:
    """The operator set domains an ONNX ``ModelProto`` imports (field 8, ``opset_import``),
    read from the protobuf wire format (no ``onnx`` package in the image)."""
    domains: set[str] = set()
    for number, value in _fields(model_bytes):
        if number == 8 and isinstance(value, bytes):
            entry = dict(_fields(value))
            domain = entry.get(1, b"")
            domains.add(domain.decode("utf-8") if isinstance(domain, bytes) else "")
    return domains


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise ValueError("truncated ONNX model")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _fields(data: bytes) -> list[tuple[int, int | bytes]]:
    """(field number, value) of one protobuf message; length-delimited values as bytes."""
    out: list[tuple[int, int | bytes]] = []
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
            out.append((number, value))
        elif wire == 2:
            size, pos = _varint(data, pos)
            out.append((number, data[pos : pos + size]))
            pos += size
        elif wire in (1, 5):
            pos += 8 if wire == 1 else 4
        else:
            raise ValueError(f"not an ONNX model (protobuf wire type {wire})")
    return out


def cpu_threads(env: dict[str, str] | os._Environ[str] = os.environ) -> int:
    """Threads for the session: the environment's vCPU share, at least 1, at most the cores."""
    memory = int(env.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE") or FULL_VCPU_MB)
    return max(1, min(math.ceil(memory / FULL_VCPU_MB), os.cpu_count() or 1))


class OnnxModel:
    """A classifier with ``label`` and ``probabilities`` outputs (skl2onnx, ``zipmap=False``)."""

    def __init__(self, path: str | Path, classes: list[int], threads: int | None = None) -> None:
        import onnxruntime

        data = Path(path).read_bytes()
        if other := operator_domains(data) - STANDARD_DOMAINS:
            raise ValueError(f"{path}: non-standard ONNX operator domains {sorted(other)}")
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads or cpu_threads()
        options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(
            data, options, providers=["CPUExecutionProvider"]
        )
        self.input_name = self.session.get_inputs()[0].name
        outputs = [o.name for o in self.session.get_outputs()]
        if outputs[:2] != ["label", "probabilities"]:
            raise ValueError(f"{path}: outputs {outputs}, expected ['label', 'probabilities']")
        self.classes = np.asarray(classes, dtype=np.int64)

    def _run(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = np.asarray(pixels, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != N_PIXELS:
            raise ValueError(f"expected shape (n, {N_PIXELS}), got {x.shape}")
        labels, probabilities = self.session.run(None, {self.input_name: x})[:2]
        return np.asarray(labels, dtype=np.int64), np.asarray(probabilities, dtype=np.float32)

    def predict(self, pixels: np.ndarray) -> np.ndarray:
        """A label for every row of (n, 784) pixels."""
        return self._run(pixels)[0]

    def predict_proba(self, pixels: np.ndarray) -> np.ndarray:
        """(n, len(classes)) class probabilities, columns in the order of ``classes``."""
        return self._run(pixels)[1]
