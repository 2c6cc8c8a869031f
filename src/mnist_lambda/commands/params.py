"""``mnist-lambda params``: every notebook's parameters, with type, default and help."""

from __future__ import annotations

import argparse
import sys

import papermill as pm

from mnist_lambda import paths
from mnist_lambda.commands.options import add_verbosity, steps_list
from mnist_lambda.pipeline import runner

HELP = "list every notebook's parameters"
EXAMPLES = """examples:
  mnist-lambda params
  mnist-lambda params --steps train,deploy
  mnist-lambda params -q                    # names only
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``mnist-lambda params`` options."""
    p.add_argument("--steps", type=steps_list, help="comma-separated subset, e.g. sample,train")
    add_verbosity(
        p,
        quiet="each step's parameter names only",
        verbose="also the other steps each parameter goes to (-p KEY VALUE sets it in all)",
    )


def main(args: argparse.Namespace) -> int:
    """Print each step's notebook and its parameters (papermill reads them)."""
    try:
        chosen = {step.name for step in runner.select_steps(args.steps)}
    except runner.RunError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    steps = runner.available_steps()
    specs = {s.name: pm.inspect_notebook(str(paths.notebooks_dir() / s.notebook)) for s in steps}
    for step in (s for s in steps if s.name in chosen):
        if args.quiet:
            print(f"{step.name}: {' '.join(specs[step.name])}")
            continue
        print(f"{step.name}: notebooks/{step.notebook}")
        for name, spec in specs[step.name].items():
            line = f"  {name} ({spec['inferred_type_name']}) = {spec['default']}  {spec['help']}"
            others = [s for s in specs if s != step.name and name in specs[s]]
            if args.verbose and others:
                line += f"  [also: {', '.join(others)}]"
            print(line.rstrip())
    return 0
