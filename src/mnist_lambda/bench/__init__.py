"""``mnist-lambda bench``: the tutorial's deployment and ours, side by side, in one run.

Both run under the same local stack (moto S3, the Lambda Runtime Interface Emulator, the API
Gateway front) on this machine, on the same MNIST rows, with calls alternating A, B, A, B.
See :mod:`mnist_lambda.bench.run` and ``docs/performance.md``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

DEFAULT_DATA = "idx:../shared/data/mnist"
HELP = "the tutorial's deployment and ours, side by side on the local stack"
EXAMPLES = """examples:
  mnist-lambda bench                     # full profile, about 2-3 minutes
  mnist-lambda bench --quick --out /tmp/b
  mnist-lambda bench --quick --no-docker  # without the images built and served with Docker
  mnist-lambda bench --readme            # and rewrite README.md's performance table
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true", help="few repeats, small sizes (for tests)")
    p.add_argument("--out", help="results folder (default: outputs/bench/<UTC time>)")
    p.add_argument(
        "--data",
        default=DEFAULT_DATA,
        help=f"data_source for mnist_lambda.modeling.data.load_mnist, relative to the repo root "
        f"(default: {DEFAULT_DATA})",
    )
    p.add_argument(
        "--tutorial-memory-mb",
        type=int,
        default=None,
        help="MemorySize of the tutorial's function (default: 5000, the SAM ML templates')",
    )
    p.add_argument("--repeats", type=int, default=None, help="warm calls per size and config")
    p.add_argument("--no-batch", action="store_true", help="skip the 70,000-row batch part")
    p.add_argument(
        "--docker",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="add both images built by `sam build` and served by `sam local start-api` "
        "(default: when a Docker engine answers; --docker fails without one)",
    )
    p.add_argument(
        "--readme",
        action="store_true",
        help="replace the performance table in README.md with this run's results",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")


README_BEGIN = "<!-- bench:begin (written by `mnist-lambda bench --readme`) -->"
README_END = "<!-- bench:end -->"


def update_readme(readme: Path, table_md: str) -> None:
    """Put ``table_md`` between the bench markers of ``readme`` (atomically)."""
    from mnist_lambda.storage import atomic_write_text

    text = readme.read_text(encoding="utf-8")
    start, end = text.find(README_BEGIN), text.find(README_END)
    if start < 0 or end < start:
        raise ValueError(f"{readme}: no {README_BEGIN!r} ... {README_END!r} block")
    head = text[: start + len(README_BEGIN)]
    atomic_write_text(readme, f"{head}\n{table_md.strip()}\n{text[end:]}")


def main(args: Any) -> int:
    import json

    from mnist_lambda.bench import run

    profile = run.Profile.quick() if args.quick else run.Profile.full()
    if args.repeats:
        profile.repeats = args.repeats
    if args.tutorial_memory_mb:
        profile.tutorial_memory_mb = args.tutorial_memory_mb
    if args.no_batch:
        profile.batch_instances = ()
    results = run.run_bench(
        profile, out=args.out, data_source=args.data, verbose=not args.quiet, docker=args.docker
    )
    if skipped := results.get("docker", {}).get("skipped"):
        print(f"docker rows {skipped}")
    print(json.dumps(results["targets"], indent=2))
    print(f"results: {results['paths']['results']}")
    print(f"figure:  {results['paths']['figure']}")
    if args.readme:
        from mnist_lambda.paths import project_root

        readme = project_root() / "README.md"
        update_readme(readme, Path(results["paths"]["table"]).read_text(encoding="utf-8"))
        print(f"updated the performance table in {readme}")
    return 0
