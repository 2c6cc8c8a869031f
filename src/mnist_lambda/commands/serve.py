"""``mnist-lambda serve``: the local stack in the foreground: S3 (moto, IAM enforced), the
function's sandboxed environments (the AWS Lambda Runtime Interface Emulator) and the API Gateway
front, supervised (:mod:`mnist_lambda.local_stack.supervisor`).

It prints one JSON line when the stack is ready (also to ``--state-file``), then logs to stderr.
SIGTERM or Ctrl-C stops everything; SIGHUP redeploys (fresh environments on a fresh copy of the
app, so the next request is a cold start; S3 stays).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from mnist_lambda.commands.options import add_verbosity
from mnist_lambda.local_stack.supervisor import StackConfig, log, serve

HELP = "the local stack: S3 (IAM enforced) + sandboxed Lambda emulator + API Gateway front"
EXAMPLES = """examples:
  mnist-lambda serve --instances 2
  mnist-lambda serve --model-path outputs/<run>/model/model.npz -P MemorySize=885
  mnist-lambda serve --model-path outputs/<run>/model/model.onnx -P SnapStart=PublishedVersions
  mnist-lambda serve -P DataKeyPrefix=inputs/ -e LOG_LEVEL=DEBUG --port 8080
"""


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``mnist-lambda serve`` options; their defaults are :class:`StackConfig`'s."""
    default, add = StackConfig(), p.add_argument
    add("--port", type=int, default=default.port, help="API port (default: a free port)")
    add("--s3-port", type=int, default=default.s3_port, help="S3 port (default: a free port)")
    s3_host_help = (
        f"S3 address (default: {default.s3_host}); the Docker bridge's gateway lets a container "
        "(`sam local`) reach it"
    )
    add("--s3-host", default=default.s3_host, help=s3_host_help)
    instances_help = "environments (concurrency); 0: none yet"
    add("--instances", type=int, default=default.instances, help=instances_help)
    add("--bucket", default=default.bucket, help=f"data bucket (default: {default.bucket})")
    add(
        "--template",
        type=Path,
        default=default.template,
        help="SAM template (default: %(default)s)",
    )
    app_help = "function code, the task root (default: %(default)s)"
    add("--app-dir", type=Path, default=default.app_dir, help=app_help)
    add("--model-path", type=Path, help="serve this model (.npz or .onnx, with its manifest)")
    add("--state-file", type=Path, help="also write the ready JSON here; removed on shutdown")
    add("--region", default=default.region, help="(default: %(default)s)")
    timeout_help = "API Gateway integration timeout in seconds (default: %(default)s)"
    add(
        "--integration-timeout", type=float, default=default.integration_timeout, help=timeout_help
    )
    pairs = {"action": "append", "type": _key_value, "metavar": "KEY=VALUE", "default": []}
    add("-P", dest="parameters", **pairs, help="template parameter override (repeatable)")
    add("-e", dest="env", **pairs, help="extra function environment variable (repeatable)")
    add("--handler", help="override the handler (default: from the template/Dockerfile)")
    add_verbosity(p, quiet="warnings and errors only", verbose="debug logs (RIE, moto)")


def config_from(args: argparse.Namespace) -> StackConfig:
    """The stack ``args`` describe, its paths made absolute."""
    return StackConfig(
        template=args.template.resolve(),
        app_dir=args.app_dir.resolve(),
        model_path=_absolute(args.model_path),
        instances=args.instances,
        bucket=args.bucket,
        region=args.region,
        port=args.port,
        s3_port=args.s3_port,
        s3_host=args.s3_host,
        state_file=_absolute(args.state_file),
        parameters=dict(args.parameters),
        env=dict(args.env),
        handler=args.handler,
        integration_timeout=args.integration_timeout,
    )


def _absolute(path: Path | None) -> Path | None:
    return path.resolve() if path is not None else None


def main(args: argparse.Namespace) -> int:
    """Run the local stack until SIGTERM/SIGINT; return the exit code (0 on a clean stop)."""
    _configure_logging(logging.DEBUG if args.verbose else logging.WARNING if args.quiet else None)
    if args.instances < 0:
        log.error("--instances must be >= 0")
        return 2
    return serve(config_from(args))


def _configure_logging(level: int | None) -> None:
    log.setLevel(level or logging.INFO)
    if not logging.getLogger().handlers and not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        log.addHandler(handler)
        log.propagate = False
