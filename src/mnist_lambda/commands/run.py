"""``mnist-lambda run``: the notebooks in order with papermill, into one run folder."""

from __future__ import annotations

import argparse
import sys

from mnist_lambda.commands.options import add_verbosity, log_verbosely, steps_list
from mnist_lambda.pipeline import preflight, report, runner

HELP = "run the notebooks in order with papermill"
EXAMPLES = """examples:
  mnist-lambda run                                   # all steps, local defaults
  mnist-lambda run -p data_source idx:../shared/data/mnist -p n_samples 10000
  mnist-lambda run --steps sample,train -p cv_folds 5 --out outputs/try-1
  mnist-lambda run --from outputs/<run>/run.json     # repeat a run exactly
  mnist-lambda run -p target aws -p bucket my-unique-bucket -p region eu-west-1
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``mnist-lambda run`` options."""
    p.add_argument(
        "--out", metavar="DIR", help="run folder (default: outputs/<UTC time>-<git sha>)"
    )
    p.add_argument("--steps", type=steps_list, help="comma-separated subset, e.g. sample,train")
    p.add_argument(
        "--from",
        dest="replay",
        metavar="RUN_JSON",
        help="repeat a recorded run: its steps and every parameter it ran with "
        "(e.g. outputs/<run>/run.json); -p and --steps override",
    )
    p.add_argument(
        "-p",
        dest="params",
        nargs=2,
        action="append",
        default=[],
        metavar=("KEY", "VALUE"),
        help="a notebook parameter, e.g. -p n_samples 10000 (repeatable)",
    )
    p.add_argument(
        "--keep-stack",
        action="store_true",
        help="leave the local stack running after the run (stop it later with "
        "`mnist-lambda run --steps deploy --out <run> -p teardown true`)",
    )
    add_verbosity(
        p,
        quiet="no progress bars",
        verbose="each notebook's input, output and working folder (papermill's log)",
    )


def main(args: argparse.Namespace) -> int:
    """Check what ``target=aws`` needs first, run, then print what the run did."""
    if args.verbose:
        log_verbosely()
    params = {key: runner.parse_value(value) for key, value in args.params}
    steps = args.steps or None
    try:
        base = None
        if args.replay:
            replay_steps, base = runner.replay_plan(args.replay)
            steps = steps or replay_steps
        if problems := preflight.check_run(params, steps, base, out=sys.stderr):
            return preflight.report(problems)
        result = runner.run(
            out_dir=args.out,
            steps=steps,
            parameters=params,
            progress=not args.quiet,
            keep_stack=args.keep_stack,
            base=base,
            replayed_from=args.replay,
        )
    except runner.RunError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if result.status != "succeeded":
        print(f"error: {result.error}", file=sys.stderr)
        print(f"run record: {result.run_dir}", file=sys.stderr)
        return 1
    print(f"run {result.run_dir.name} succeeded: {result.run_dir}")
    print(report.summary_text(result.run_dir, result.run_dir / "report.html"))
    return 0
