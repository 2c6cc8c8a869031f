"""A notebook run in place and saved, as JupyterLab or VS Code saves it, leaves git with nothing
to commit: the nbstripout filter (scripts/git-notebook-filter.sh, run by `make setup`) strips its
outputs and the metadata the kernel and the editor fill in, on the way into git.

The repository is a temporary one made of this clone's notebooks and filter, never the clone.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from notebook_repo import git, make_notebook_repo

from mnist_lambda import paths
from mnist_lambda.pipeline import runner

NOTEBOOK = "01_sample_data.ipynb"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_notebook_repo(tmp_path / "repo")


def _run_and_save_as_an_editor_would(path: Path, outputs: Path) -> None:
    """Execute the notebook in place on its own kernel, then add what JupyterLab and VS Code
    write on saving: the kernel's language_info, widget state, VS Code's interpreter."""
    nb = nbformat.read(path, as_version=4)
    env = {**os.environ, paths.OUTPUTS_ENV: str(outputs)}
    client = NotebookClient(
        nb,
        kernel_name=nb.metadata.kernelspec.name,
        record_timing=True,
        timeout=600,
        kernel_manager_class=runner.LocalKernelManager,
    )
    client.execute(cwd=str(path.parent), env=env)
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}}}
    nb.metadata["vscode"] = {"interpreter": {"hash": "0" * 64}}
    nbformat.write(nb, path)


@pytest.mark.timeout(600)
def test_a_notebook_run_in_place_leaves_git_clean(repo: Path, tmp_path: Path) -> None:
    path = repo / "notebooks" / NOTEBOOK
    committed = path.read_text(encoding="utf-8")
    _run_and_save_as_an_editor_would(path, tmp_path / "outputs")

    saved = json.loads(path.read_text(encoding="utf-8"))
    assert any(c.get("outputs") for c in saved["cells"])  # the file on disk has its outputs
    assert saved["metadata"]["language_info"].get("version")  # filled in by the kernel
    assert saved["metadata"]["kernelspec"]["name"] == runner.KERNEL_NAME
    assert (tmp_path / "outputs" / "interactive" / "data" / "X_test.npy").exists()

    # git compares the file through the filter: nothing changed, nothing to commit ...
    assert git(repo, "diff", "--no-textconv") == ""
    # ... though `git status` may list it until an add refreshes the index (git takes a file
    # whose size changed for modified without reading it); the add stages nothing
    git(repo, "add", "notebooks")
    assert git(repo, "status", "--porcelain") == ""
    assert git(repo, "diff", "--cached", "--stat") == ""
    assert git(repo, "show", f":notebooks/{NOTEBOOK}") == committed
