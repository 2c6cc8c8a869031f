"""Package pins: poetry.lock's packages and lambda_app/requirements.txt's exact pins."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

from repo_paths import LAMBDA_APP, ROOT


def normalize(name: str) -> str:
    """PEP 503 name normalisation."""
    return re.sub(r"[-_.]+", "-", name).lower()


def lock_packages(lock_path: Path = ROOT / "poetry.lock") -> dict[str, dict[str, Any]]:
    """``{normalized name: {"version": str, "files": [file names]}}`` from poetry.lock."""
    data = tomllib.loads(lock_path.read_text())
    return {
        normalize(pkg["name"]): {
            "version": pkg["version"],
            "files": [f["file"] for f in pkg.get("files", [])],
        }
        for pkg in data["package"]
    }


def requirement_pins(path: Path = LAMBDA_APP / "requirements.txt") -> dict[str, str]:
    """``{normalized name: version}`` of the ``name==version`` lines of a requirements file."""
    pins: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)", line)
        assert match, f"not an exact pin: {line!r}"
        pins[normalize(match.group(1))] = match.group(2)
    return pins
