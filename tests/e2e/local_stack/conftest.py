"""Fixtures of the local-stack layer (API front, Lambda emulator, moto S3, as subprocesses)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def expected(small_model_path: Path, rows) -> list[int]:
    """What the small model says about the module's ``rows`` (each module sizes its own)."""
    from mnist_serving.model import load

    return load(small_model_path).predict(rows).tolist()
