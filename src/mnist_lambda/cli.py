"""The ``mnist-lambda`` command: run the notebook pipeline, serve the local stack, and more.

One convention for every subcommand: a module with ``HELP``, ``EXAMPLES``,
``add_arguments(parser)`` and ``main(args) -> int``, registered in :data:`COMMANDS`.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

COMMANDS = {
    "run": "mnist_lambda.commands.run",
    "params": "mnist_lambda.commands.params",
    "serve": "mnist_lambda.local_stack.supervisor",
    "predict-batch": "mnist_lambda.commands.predict_batch",
    "bench": "mnist_lambda.bench",
    "tune": "mnist_lambda.commands.tune",
    "image": "mnist_lambda.commands.image",
}


def build_parser() -> argparse.ArgumentParser:
    """``mnist-lambda`` and its subcommands, each with ``--help`` and examples."""
    parser = argparse.ArgumentParser(prog="mnist-lambda", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
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
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
