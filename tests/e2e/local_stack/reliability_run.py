"""How long the reliability tests run (``FUZZ_PROFILE``) and where they write their figures."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from repo_paths import ROOT

OUTPUTS = Path(os.environ.get("RELIABILITY_OUTPUTS", ROOT / "tmp" / "outputs"))
"""Where the tests write their figures (JSON), for docs/reliability.md."""

PROFILE = os.environ.get("FUZZ_PROFILE", "ci").lower()
LONG = PROFILE == "long"


def write_figures(name: str, data: dict[str, Any]) -> Path:
    """Write ``data`` to ``tmp/outputs/<name>.json`` (atomically) and print it."""
    from mnist_lambda.storage import atomic_write_json

    path = atomic_write_json(OUTPUTS / f"{name}.json", data)
    print(f"\n{name}: {json.dumps(data, indent=1)}\n-> {path}")
    return path
