"""The options every subcommand spells the same way.

``--out`` for where results go, ``--steps`` (comma-separated) for a subset of the pipeline,
``-p KEY VALUE`` for a notebook parameter, ``-P KEY=VALUE`` for a template parameter, and
``-q/--quiet`` (no progress) and ``-v/--verbose`` (more detail) on every subcommand.
"""

from __future__ import annotations

import argparse
import logging
import sys


def add_verbosity(p: argparse.ArgumentParser, *, quiet: str, verbose: str) -> None:
    """``-q/--quiet`` and ``-v/--verbose`` (one or the other), with what each does here."""
    group = p.add_mutually_exclusive_group()
    group.add_argument("-q", "--quiet", action="store_true", help=quiet)
    group.add_argument("-v", "--verbose", action="store_true", help=verbose)


def steps_list(text: str) -> list[str]:
    """``--steps sample,train`` -> ``["sample", "train"]`` (blanks ignored)."""
    return [step.strip() for step in text.split(",") if step.strip()]


def log_verbosely() -> None:
    """``--verbose``: INFO log records (the project's and its libraries') to stderr."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s: %(message)s")
