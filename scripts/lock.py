"""Re-lock poetry.lock where PyPI's JSON API is unreachable but its simple API (pip's) is.

``poetry lock`` asks PyPI's JSON API; some mirrors and proxies answer only the simple API that
pip uses. This runs ``poetry lock`` with a temporary primary source on the simple API, then
removes that source from pyproject.toml and from the lock's entries and writes the content hash
Poetry expects, so the lock is the one ``poetry lock`` would write against PyPI. Usage::

    .tools/bin/python scripts/lock.py        # after editing pyproject.toml's dependencies
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE = """
[[tool.poetry.source]]
name = "pypi-simple"
url = "https://pypi.org/simple/"
priority = "primary"
"""
SOURCE_ENTRY = re.compile(
    r'\n\[package\.source\]\ntype = "legacy"\nurl = "https://pypi\.org/simple"\n'
    r'reference = "pypi-simple"\n'
)


def main() -> int:
    pyproject, lock = ROOT / "pyproject.toml", ROOT / "poetry.lock"
    original = pyproject.read_text()
    poetry = [sys.executable, "-m", "poetry", "--directory", str(ROOT)]
    try:
        pyproject.write_text(original.rstrip("\n") + "\n" + SOURCE)
        subprocess.run([*poetry, "lock"], check=True)
    finally:
        pyproject.write_text(original)
    lock.write_text(SOURCE_ENTRY.sub("\n", lock.read_text()))
    from poetry.factory import Factory

    digest = Factory().create_poetry(ROOT).locker._get_content_hash()
    line = f'content-hash = "{digest}"'
    text = re.sub(r'^content-hash = ".*"$', line, lock.read_text(), count=1, flags=re.M)
    lock.write_text(text)
    return subprocess.run([*poetry, "check", "--lock"]).returncode


if __name__ == "__main__":
    raise SystemExit(main())
