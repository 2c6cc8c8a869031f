"""`make lint`: run every hook of .pre-commit-config.yaml over the files it selects.

pre-commit is not in poetry.lock, so this reads the config itself and runs each local hook's
``entry`` + ``args`` with the files its ``files``/``exclude``/``types``/``types_or``/
``exclude_types`` select, as ``pre-commit run --all-files`` would, except that the files are the
tracked ones plus untracked, not ignored ones (new files are linted before they are added).
There is one list of hooks: the config. Exit status 1 when any hook fails.

Usage: ``python scripts/lint.py [--config PATH] [HOOK_ID...]`` from anywhere in the checkout.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / ".pre-commit-config.yaml"
LANGUAGES = {"system", "unsupported", "script", "unsupported_script"}

EXTENSIONS = {
    ".py": {"python"},
    ".pyi": {"pyi"},
    ".ipynb": {"jupyter", "json"},
    ".json": {"json"},
    ".yaml": {"yaml"},
    ".yml": {"yaml"},
    ".toml": {"toml"},
    ".md": {"markdown"},
    ".sh": {"shell"},
    ".cfg": {"ini"},
    ".ini": {"ini"},
}
NAMES = {"Dockerfile": {"dockerfile"}, "Makefile": {"makefile"}}
KNOWN_TAGS = {"file", "text", "binary", "executable"}.union(*EXTENSIONS.values(), *NAMES.values())


def file_tags(path: Path) -> set[str]:
    """The identify-style tags of a file that the config can select on."""
    tags = {"file"}
    tags |= EXTENSIONS.get(path.suffix.lower(), set()) | NAMES.get(path.name, set())
    if path.name.startswith("Dockerfile."):
        tags.add("dockerfile")
    with path.open("rb") as f:
        head = f.read(1024)
    tags.add("binary" if b"\0" in head else "text")
    if os.access(path, os.X_OK):
        tags.add("executable")
        if head.startswith(b"#!"):
            shebang = head.split(b"\n", 1)[0].decode(errors="replace")
            if "python" in shebang:
                tags.add("python")
            elif re.search(r"\b(ba|z|da)?sh\b", shebang):
                tags.add("shell")
    return tags


def repo_files(root: Path = ROOT) -> list[str]:
    """Tracked and untracked, not ignored files that exist (regular files, not symlinks)."""
    out = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=root,
        capture_output=True,
        check=True,
    ).stdout.decode()
    names = sorted(set(out.split("\0")) - {""})
    return [n for n in names if (root / n).is_file() and not (root / n).is_symlink()]


def local_hooks(config: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every hook of the config; refuses anything that pre-commit would fetch or build."""
    hooks = []
    for repo in config.get("repos", []):
        if repo.get("repo") != "local":
            raise SystemExit(
                f"only `repo: local` hooks run offline from .venv: {repo.get('repo')}"
            )
        for hook in repo.get("hooks", []):
            if hook.get("language") not in LANGUAGES:
                raise SystemExit(f"{hook['id']}: language {hook.get('language')!r} needs a build")
            unknown = {
                t
                for key in ("types", "types_or", "exclude_types")
                for t in hook.get(key, [])
                if t not in KNOWN_TAGS
            }
            if unknown:
                raise SystemExit(f"{hook['id']}: scripts/lint.py does not know tags {unknown}")
            hooks.append(hook)
    return hooks


def select(
    hook: Mapping[str, Any], files: Iterable[str], tags: Mapping[str, set[str]], config: Mapping
) -> list[str]:
    """The files a hook runs on, with pre-commit's filters (top-level ones included)."""
    include = re.compile(hook.get("files", ""))
    exclude = re.compile(hook.get("exclude", "^$"))
    top_include = re.compile(config.get("files", ""))
    top_exclude = re.compile(config.get("exclude", "^$"))
    types = set(hook.get("types", ["file"]))
    types_or = set(hook.get("types_or", []))
    exclude_types = set(hook.get("exclude_types", []))
    return [
        f
        for f in files
        if top_include.search(f)
        and not top_exclude.search(f)
        and include.search(f)
        and not exclude.search(f)
        and types <= tags[f]
        and (not types_or or types_or & tags[f])
        and not exclude_types & tags[f]
    ]


def run_hook(hook: Mapping[str, Any], files: Sequence[str], root: Path = ROOT) -> int | None:
    """Run one hook the way pre-commit does; its exit status, None when it had nothing to check."""
    if not files and not hook.get("always_run", False):
        return None
    command = [*shlex.split(hook["entry"]), *map(str, hook.get("args", []))]
    if hook.get("pass_filenames", True):
        command += files
    return subprocess.run(command, cwd=root, check=False).returncode


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=CONFIG)
    parser.add_argument("hook_ids", nargs="*", help="run only these hooks")
    args = parser.parse_args(argv)

    config = yaml.safe_load(args.config.read_text(encoding="utf-8"))
    hooks = local_hooks(config)
    unknown = set(args.hook_ids) - {h["id"] for h in hooks}
    if unknown:
        parser.error(f"no such hooks: {sorted(unknown)}")
    files = repo_files()
    tags = {f: file_tags(ROOT / f) for f in files}
    failed = []
    for hook in hooks:
        if args.hook_ids and hook["id"] not in args.hook_ids:
            continue
        print(f"--- {hook.get('name', hook['id'])}", flush=True)
        status = run_hook(hook, select(hook, files, tags, config))
        verdict = {None: "skipped (no files)", 0: "passed"}.get(status, f"FAILED ({status})")
        print(f"--- {hook['id']}: {verdict}", flush=True)
        if status not in (None, 0):
            failed.append(hook["id"])
    if failed:
        print(f"lint failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
