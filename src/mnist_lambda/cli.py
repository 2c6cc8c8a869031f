"""The ``mnist-lambda`` command: run the notebook pipeline, serve the local stack, and more."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from mnist_lambda import runner


def _run(args: argparse.Namespace) -> int:
    params = {key: runner.parse_value(value) for key, value in args.param or []}
    steps = [s.strip() for s in args.steps.split(",") if s.strip()] if args.steps else None
    try:
        result = runner.run(
            out_dir=args.out,
            steps=steps,
            parameters=params,
            progress=not args.quiet,
            after_run=None if args.keep_stack else _stop_local_stack,
        )
    except runner.RunError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if result.status != "succeeded":
        print(f"error: {result.error}", file=sys.stderr)
        print(f"run record: {result.run_dir}", file=sys.stderr)
        return 1
    print(f"run {result.run_dir.name} succeeded: {result.run_dir}")
    for item in result.steps:
        print(f"  {item['step']:<9} {item['seconds']:>7.1f} s  {item['notebook']}")
    print(f"  metrics: {result.run_dir / 'metrics.json'}")
    print(f"  report:  {result.run_dir / 'report.html'}")
    return 0


def _stop_local_stack(run_dir: Path) -> None:
    from mnist_lambda import local_stack

    if local_stack.read(run_dir) is not None:
        local_stack.stop(run_dir)
        print("local stack stopped (use --keep-stack to leave it running)", file=sys.stderr)


def _params(args: argparse.Namespace) -> int:
    import papermill as pm

    from mnist_lambda import paths

    for step in runner.available_steps():
        print(f"{step.name}: notebooks/{step.notebook}")
        for name, spec in pm.inspect_notebook(str(paths.notebooks_dir() / step.notebook)).items():
            print(
                f"  {name} ({spec['inferred_type_name']}) = {spec['default']}"
                f"  {spec['help']}".rstrip()
            )
    return 0


def _predict_batch(args: argparse.Namespace) -> int:
    from mnist_lambda import batch

    return batch.main(args)


def _bench(args: argparse.Namespace) -> int:
    from mnist_lambda import bench

    return bench.main(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mnist-lambda", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the notebooks in order with papermill")
    run.add_argument("--out", help="run folder (default: outputs/<UTC time>-<git sha>)")
    run.add_argument("--steps", help="comma-separated subset, e.g. sample,train")
    run.add_argument(
        "-p",
        "--param",
        nargs=2,
        action="append",
        metavar=("KEY", "VALUE"),
        help="a notebook parameter, e.g. -p n_samples 10000 (repeatable)",
    )
    run.add_argument(
        "--keep-stack",
        action="store_true",
        help="leave the local stack running after the run (stop it later with "
        "`mnist-lambda run --steps deploy --out <run> -p teardown true`)",
    )
    run.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    run.set_defaults(func=_run)

    params = sub.add_parser("params", help="list every notebook's parameters")
    params.set_defaults(func=_params)

    predict_batch = sub.add_parser(
        "predict-batch",
        help="predict more rows than one request can carry: chunk, upload, invoke concurrently",
    )
    from mnist_lambda import batch

    batch.add_arguments(predict_batch)
    predict_batch.set_defaults(func=_predict_batch)

    bench = sub.add_parser(
        "bench", help="the tutorial's deployment and ours, side by side on the local stack"
    )
    from mnist_lambda.bench import add_arguments as bench_arguments

    bench_arguments(bench)
    bench.set_defaults(func=_bench)

    serve = sub.add_parser(
        "serve", add_help=False, help="the local stack: S3 + Lambda emulator + API Gateway front"
    )
    serve.set_defaults(func=None)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["serve"]:
        from mnist_lambda.local_stack.supervisor import serve_main

        return serve_main(argv[1:])
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
