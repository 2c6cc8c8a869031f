"""Offline stand-ins for three pre-commit-hooks checks, run from .venv by .pre-commit-config.yaml.

pre-commit-hooks is not in poetry.lock, so these implement the same checks with what is:

- ``check-yaml --unsafe``: every file parses as one YAML document; CloudFormation short-form tags
  (``!Ref``, ``!Sub``...) are accepted, as the template reader loads them.
- ``check-added-large-files --maxkb N``: no file that is not yet in ``HEAD`` is over N KB.
- ``detect-aws-credentials``: no AWS access key id (``AKIA...``, ``ASIA...``), no
  ``aws_secret_access_key = <40 chars>`` and no secret configured on this machine (environment,
  ``~/.aws/credentials``, ``~/.aws/config``) appears in a file.

Usage: ``python scripts/hooks.py <check> [options] FILE...``; exit status 1 when a check fails.
"""

from __future__ import annotations

import argparse
import configparser
import os
import re
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

ACCESS_KEY_ID = re.compile(r"\b(?:A3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}\b")
SECRET_ASSIGNMENT = re.compile(
    r"aws_?secret_?access_?key['\"]?\s*[:=]\s*['\"]?([A-Za-z0-9/+=]{40})(?![A-Za-z0-9/+=])",
    re.IGNORECASE,
)
SECRET_KEYS = ("aws_secret_access_key", "aws_session_token")
SECRET_ENV = ("AWS_SECRET_ACCESS_KEY", "AWS_SECRET_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN")


def check_yaml(paths: Iterable[str]) -> list[str]:
    """Problems parsing each file as a single YAML document with CloudFormation tags allowed."""
    import yaml

    from mnist_lambda.template.reader import load_template_text

    problems = []
    for path in paths:
        try:
            load_template_text(path)
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            problems.append(f"{path}: {exc}")
    return problems


def files_in_head(root: Path | str = ".") -> set[str]:
    """Paths committed in ``HEAD`` (empty before the first commit)."""
    done = subprocess.run(
        ["git", "ls-tree", "-r", "-z", "--name-only", "HEAD"],
        cwd=root,
        capture_output=True,
        check=False,
    )
    return set(done.stdout.decode().split("\0")) - {""} if done.returncode == 0 else set()


def check_added_large_files(paths: Iterable[str], maxkb: int, committed: set[str]) -> list[str]:
    """Files not in ``committed`` that are larger than ``maxkb`` KB."""
    problems = []
    for path in paths:
        if Path(path).as_posix() in committed or not os.path.isfile(path):
            continue
        kb = (os.path.getsize(path) + 1023) // 1024
        if kb > maxkb:
            problems.append(f"{path} ({kb} KB) exceeds {maxkb} KB")
    return problems


def configured_secrets(environ: Mapping[str, str] | None = None) -> set[str]:
    """Secret values this machine has configured for AWS: environment and shared files."""
    env = os.environ if environ is None else environ
    secrets = {env[name] for name in SECRET_ENV if env.get(name)}
    files = [
        env.get("AWS_SHARED_CREDENTIALS_FILE", "~/.aws/credentials"),
        env.get("AWS_CONFIG_FILE", "~/.aws/config"),
    ]
    for name in files:
        parser = configparser.RawConfigParser()
        try:
            parser.read(os.path.expanduser(name), encoding="utf-8")
        except (configparser.Error, OSError, UnicodeDecodeError):
            continue
        for section in parser.sections():
            secrets.update(
                parser.get(section, key)
                for key in SECRET_KEYS
                if parser.has_option(section, key) and parser.get(section, key)
            )
    return {s.strip() for s in secrets if len(s.strip()) >= 16}


def detect_aws_credentials(
    paths: Iterable[str], allow: Sequence[str] = (), secrets: Iterable[str] = ()
) -> list[str]:
    """Files that contain an access key id, a secret key assignment or a configured secret."""
    allowed = set(allow)
    secrets = set(secrets)
    problems = []
    for path in paths:
        try:
            text = Path(path).read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        for lineno, line in enumerate(text.splitlines(), 1):
            found = [m.group(0) for m in ACCESS_KEY_ID.finditer(line)]
            found += [m.group(1) for m in SECRET_ASSIGNMENT.finditer(line)]
            found += [s for s in secrets if s in line]
            # say where, never what: the value would land in logs
            problems.extend(
                f"{path}:{lineno}: AWS credential ({value[:4]}...)"
                for value in found
                if value not in allowed
            )
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="check", required=True)
    yaml_check = sub.add_parser("check-yaml")
    yaml_check.add_argument("--unsafe", action="store_true", help="accepted; tags always allowed")
    large = sub.add_parser("check-added-large-files")
    large.add_argument("--maxkb", type=int, default=500)
    creds = sub.add_parser("detect-aws-credentials")
    creds.add_argument("--allow", action="append", default=[], help="a known fake key id")
    for p in (yaml_check, large, creds):
        p.add_argument("files", nargs="*")
    args = parser.parse_args(argv)

    if args.check == "check-yaml":
        problems = check_yaml(args.files)
    elif args.check == "check-added-large-files":
        problems = check_added_large_files(args.files, args.maxkb, files_in_head())
    else:
        problems = detect_aws_credentials(args.files, args.allow, configured_secrets())
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
