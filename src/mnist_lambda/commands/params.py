"""``mnist-lambda params``: every notebook's parameters, with type, default and help."""

from __future__ import annotations

import argparse

HELP = "list every notebook's parameters"
EXAMPLES = """examples:
  mnist-lambda params
  mnist-lambda params --step train
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``mnist-lambda params`` options."""
    p.add_argument("--step", help="only this step's notebook, e.g. train")


def main(args: argparse.Namespace) -> int:
    """Print each step's notebook and its parameters (papermill reads them)."""
    import papermill as pm

    from mnist_lambda import paths
    from mnist_lambda.pipeline import runner

    for step in runner.available_steps():
        if args.step and step.name != args.step:
            continue
        print(f"{step.name}: notebooks/{step.notebook}")
        for name, spec in pm.inspect_notebook(str(paths.notebooks_dir() / step.notebook)).items():
            print(
                f"  {name} ({spec['inferred_type_name']}) = {spec['default']}"
                f"  {spec['help']}".rstrip()
            )
    return 0
