"""Each AWS platform fact has one home, ``mnist_lambda.aws_limits``; the function image cannot
import the project, so ``lambda_app/`` keeps copies of the two it needs, proven equal here."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from repo_paths import LAMBDA_APP

from mnist_lambda import aws_limits


def _module_constant(path: Path, name: str) -> object:
    """``name``'s value in ``path``, read without importing it (the handler loads its model at
    import, and a fresh clone has none)."""
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and [t.id for t in node.targets] == [name]:
            return ast.literal_eval(node.value)
    raise AssertionError(f"{path} assigns no {name}")


def test_the_handlers_response_limit_is_lambdas() -> None:
    limit = _module_constant(LAMBDA_APP / "lambda_predict.py", "RESPONSE_LIMIT_BYTES")
    assert limit == aws_limits.LAMBDA_RESPONSE_BYTES == 6_291_556


def test_the_onnx_runtimes_vcpu_memory_is_lambdas() -> None:
    from mnist_serving import onnx_model

    assert onnx_model.FULL_VCPU_MB == aws_limits.MB_PER_VCPU == 1769


@pytest.mark.parametrize("memory_mb", [128, 1769, 10240])
def test_memory_sizes_lambda_accepts(memory_mb: int) -> None:
    assert aws_limits.check_memory_size(memory_mb) == memory_mb


@pytest.mark.parametrize("memory_mb", [0, 127, 10241])
def test_memory_sizes_lambda_refuses(memory_mb: int) -> None:
    with pytest.raises(ValueError, match="MemorySize must be 128-10240 MB"):
        aws_limits.check_memory_size(memory_mb)
