"""A throwaway git repository holding this clone's notebooks, as `make setup` leaves a clone:
``.gitignore``, ``.gitattributes`` and the nbstripout filter (scripts/git-notebook-filter.sh,
running this clone's .venv/bin/nbstripout) installed, everything committed. Tests run notebooks
there, never in the clone."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from repo_paths import ROOT


def git(repo: Path, *args: str) -> str:
    """``git args`` in ``repo``; its stdout (an error if git fails)."""
    done = subprocess.run(
        ["git", *args], cwd=repo, capture_output=True, text=True, check=True, timeout=120
    )
    return done.stdout


def make_notebook_repo(repo: Path, edit: Callable[[Path], None] | None = None) -> Path:
    """``repo`` made and committed clean; ``edit(notebooks_dir)`` runs before the commit."""
    (repo / "scripts").mkdir(parents=True)
    shutil.copytree(ROOT / "notebooks", repo / "notebooks")
    shutil.copy(ROOT / ".gitattributes", repo / ".gitattributes")
    shutil.copy(ROOT / "scripts" / "git-notebook-filter.sh", repo / "scripts")
    (repo / ".venv").symlink_to(ROOT / ".venv")
    shutil.copy(ROOT / ".gitignore", repo / ".gitignore")  # .venv/, .ipynb_checkpoints/...
    if edit is not None:
        edit(repo / "notebooks")
    git(repo, "init", "-q")
    git(repo, "config", "user.email", "test@example.invalid")
    git(repo, "config", "user.name", "test")
    subprocess.run(["bash", "scripts/git-notebook-filter.sh"], cwd=repo, check=True)
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "notebooks")
    if git(repo, "status", "--porcelain"):
        raise AssertionError("the new notebook repository is not clean")
    return repo
