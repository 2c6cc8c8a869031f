"""The ``mnist-lambda`` command: run the notebook pipeline, serve the local stack, and more.

One convention for every subcommand: a module with ``HELP``, ``EXAMPLES``,
``add_arguments(parser)`` and ``main(args) -> int``, registered in :data:`COMMANDS`; one
spelling of their options (``--out``, ``--steps``, ``-p KEY VALUE``, ``-P KEY=VALUE``, ``-q``,
``-v``: :mod:`mnist_lambda.commands.options`).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Iterable, Sequence

COMMANDS = {
    "run": "mnist_lambda.commands.run",
    "params": "mnist_lambda.commands.params",
    "serve": "mnist_lambda.commands.serve",
    "predict-batch": "mnist_lambda.commands.predict_batch",
    "bench": "mnist_lambda.commands.bench",
    "tune": "mnist_lambda.commands.tune",
    "image": "mnist_lambda.commands.image",
}


def build_parser(names: Iterable[str] = COMMANDS) -> argparse.ArgumentParser:
    """``mnist-lambda`` and its subcommands ``names`` (default: all), each with ``--help`` and
    examples."""
    parser = argparse.ArgumentParser(prog="mnist-lambda", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in names:
        module = importlib.import_module(COMMANDS[name])
        command = sub.add_parser(
            name,
            help=module.HELP,
            description=module.__doc__,
            epilog=module.EXAMPLES,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(command)
        command.set_defaults(func=module.main)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default: the command line) and run the subcommand; its exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    # only the named subcommand's module: the others' imports take seconds (papermill, ...)
    names = argv[:1] if argv[:1] and argv[0] in COMMANDS else COMMANDS
    args = build_parser(names).parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
