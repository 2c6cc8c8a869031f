"""``mnist-lambda image``: the function's container image with a Docker engine.

``base`` makes the Dockerfile's base image ready: AWS's ``public.ecr.aws/lambda/python`` when it
is here or can be pulled, else a stand-in built from this machine's files under the same tag
(labelled ``mnist-lambda.stand-in=true``; built again when what it is made of changes).
``build`` builds the Dockerfile with a trained model, as ``sam build`` does, and prints its size.
``packages`` lists what the image's task root holds beside the local stack's.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mnist_lambda.commands.options import add_verbosity, log_verbosely
from mnist_lambda.image import base, build, contents, docker_engine

HELP = "build the function's container image (base image, stand-in, Dockerfile) with Docker"
EXAMPLES = """examples:
  mnist-lambda image base                   # AWS's base image, or its stand-in
  mnist-lambda image base --force           # build the stand-in again
  mnist-lambda image build --model outputs/<run>/model/model.npz --tag mnist-predict:dev
  mnist-lambda image packages --tag mnist-predict:dev -q   # equal or NOT EQUAL
"""
DEFAULT_TAG = "mnist-predict:dev"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``mnist-lambda image`` subcommands."""
    sub = p.add_subparsers(dest="image_command", required=True)
    base_p = sub.add_parser("base", help="make the Dockerfile's base image ready")
    base_p.add_argument("--force", action="store_true", help="build the stand-in even if present")
    base_p.add_argument("--no-pull", action="store_true", help="do not try to pull AWS's image")
    build_p = sub.add_parser("build", help="docker build the Dockerfile with a trained model")
    build_p.add_argument("--model", type=Path, help="model (.npz/.onnx); default lambda_app/model")
    build_p.add_argument("--tag", default=DEFAULT_TAG, help=f"image tag (default {DEFAULT_TAG})")
    pkg_p = sub.add_parser("packages", help="the image's task root beside the local stack's")
    pkg_p.add_argument("--tag", default=DEFAULT_TAG, help=f"image tag (default {DEFAULT_TAG})")
    pkg_p.add_argument("--model", type=Path, help="the model whose requirements were built in")
    for leaf in (base_p, build_p, pkg_p):
        add_verbosity(
            leaf,
            quiet="the result only (the base image's tag, the image id, equal or not)",
            verbose="also each layer's size (build) and the library logs",
        )


def main(args: argparse.Namespace) -> int:
    """Run ``image base``, ``build`` or ``packages``; 2 without a Docker engine, 1 on failure."""
    if args.verbose:
        log_verbosely()
    if (problem := docker_engine.engine_problem()) is not None:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    try:
        if args.image_command == "base":
            ready = base.ensure_base(pull=not args.no_pull, force=args.force)
            print(ready.tag if args.quiet else ready.describe())
        elif args.image_command == "build":
            _build(args)
        else:
            text = contents.comparison_text(args.tag, args.model)
            print(text.splitlines()[-1] if args.quiet else text)
    except (base.BaseImageError, docker_engine.DockerError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def _build(args: argparse.Namespace) -> None:
    """``image build``: the base image made ready, the build, and what the image weighs."""
    ready = base.ensure_base()
    if not args.quiet:
        print(ready.describe())
    image_id = build.build_image(args.tag, model_path=args.model)
    if args.quiet:
        print(image_id)
        return
    size = build.image_size(args.tag)
    print(
        f"built {args.tag} ({image_id[:19]}): {size.bytes / 1e6:.0f} MB uncompressed, "
        f"{size.added_bytes / 1e6:.0f} MB above the base, {len(size.layer_bytes)} layers"
    )
    if args.verbose:
        layers = ", ".join(f"{layer / 1e6:.1f}" for layer in size.layer_bytes)
        print(f"layers (MB, newest first): {layers}")
