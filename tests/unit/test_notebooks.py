"""The committed notebooks as JupyterLab, VS Code and papermill meet them: the project's kernel,
no kernel-filled metadata, and a kernel started without the transport warning."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from repo_paths import ROOT

from mnist_lambda.pipeline import runner

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_notebook_names_the_projects_kernel(path) -> None:
    metadata = json.loads(path.read_text(encoding="utf-8"))["metadata"]
    assert metadata["kernelspec"] == {
        "name": runner.KERNEL_NAME,
        "display_name": runner.KERNEL_DISPLAY_NAME,
        "language": "python",
    }
    # what a kernel or an editor fills in on opening is stripped on the way into git
    assert set(metadata) == {"kernelspec"}


def test_the_pipeline_runs_every_notebook_on_it() -> None:
    assert {s.notebook for s in runner.STEPS} == {p.name for p in NOTEBOOKS}
    assert runner.KERNEL_NAME == "mnist-lambda"


def test_papermill_kernels_talk_over_local_sockets() -> None:
    """No TCP, so ipykernel has no unencrypted traffic to warn about at each step; each kernel
    has sockets of its own, at an absolute path (the kernel runs in notebooks/, not here)."""
    one, two = runner.LocalKernelManager(), runner.LocalKernelManager()
    assert one.transport == ("ipc" if os.name == "posix" else "tcp")
    if one.transport == "ipc":
        assert Path(one.ip).is_absolute() and one.ip != two.ip
        assert len(one.ip) < runner.IPC_PATH_MAX
