"""``mnist-lambda bench``: the tutorial's deployment and ours, side by side, in one run.

Both run under the same local stack (moto S3, the Lambda Runtime Interface Emulator, the API
Gateway front) on this machine, on the same MNIST rows, with calls alternating A, B, A, B; where a
Docker engine answers, both images are also built by ``sam build`` and served by
``sam local start-api``. Written: ``results.json``, ``results.md`` and ``latency_vs_rows.png`` in
``--out``. See :mod:`mnist_lambda.bench.run` and ``docs/performance.md``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mnist_lambda.bench.profile import Profile
from mnist_lambda.bench.readme import update_readme
from mnist_lambda.bench.run import DEFAULT_DATA, run_bench
from mnist_lambda.commands.options import add_verbosity, log_verbosely
from mnist_lambda.paths import project_root
from mnist_lambda.template import AUTH_TYPES
from mnist_lambda.tutorial.deployment import TUTORIAL_MEMORY_MB

HELP = "the tutorial's deployment and ours, side by side on the local stack"
EXAMPLES = """examples:
  mnist-lambda bench                     # full profile, about 2-3 minutes
  mnist-lambda bench --quick --out /tmp/b
  mnist-lambda bench --quick --no-docker  # without the images built and served with Docker
  mnist-lambda bench --auth iam          # ours behind SigV4 (or api_key), as the allowed caller
  mnist-lambda bench --readme            # and rewrite README.md's performance table
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``mnist-lambda bench`` options."""
    p.add_argument("--quick", action="store_true", help="few repeats, small sizes (for tests)")
    p.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help="results folder (default: outputs/bench/<UTC time>)",
    )
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
        help=f"MemorySize of the tutorial's function (default: {TUTORIAL_MEMORY_MB}, the SAM ML "
        "templates')",
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
        "--auth",
        choices=tuple(AUTH_TYPES),
        default="none",
        help="ours in the head-to-head behind template.yaml with this auth (iam: SigV4, "
        "api_key: x-api-key, its usage plan lifted as the stage's throttle is), called as the "
        "stack's own caller; the tutorial's side, the model comparison, the Docker rows and the "
        "batch stay unauthenticated (default: none, template_no_auth.yaml)",
    )
    p.add_argument(
        "--readme",
        action="store_true",
        help="replace the performance table in README.md with this run's results",
    )
    add_verbosity(p, quiet="no progress lines", verbose="also the library logs")


def profile_of(args: argparse.Namespace) -> Profile:
    """The profile ``--quick`` names, with the options that change it."""
    profile = Profile.quick() if args.quick else Profile.full()
    if args.repeats:
        profile.repeats = args.repeats
    if args.tutorial_memory_mb:
        profile.tutorial_memory_mb = args.tutorial_memory_mb
    if args.no_batch:
        profile.batch_instances = ()
    profile.auth = args.auth
    return profile


def main(args: argparse.Namespace) -> int:
    """Run the benchmark; print the targets and where the results are."""
    if args.verbose:
        log_verbosely()
    results = run_bench(
        profile_of(args),
        out=args.out,
        data_source=args.data,
        verbose=not args.quiet,
        docker=args.docker,
    )
    if skipped := results.get("docker", {}).get("skipped"):
        print(f"docker rows {skipped}")
    print(json.dumps(results["targets"], indent=2))
    print(f"results: {results['paths']['results']}")
    print(f"figure:  {results['paths']['figure']}")
    if args.readme:
        readme = project_root() / "README.md"
        update_readme(readme, Path(results["paths"]["table"]).read_text(encoding="utf-8"))
        print(f"updated the performance table in {readme}")
    return 0
