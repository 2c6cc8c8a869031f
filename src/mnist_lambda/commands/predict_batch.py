"""``mnist-lambda predict-batch``: more rows than one request can carry, through the endpoint."""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import numpy as np
from botocore.exceptions import BotoCoreError, ClientError

from mnist_lambda import local_stack
from mnist_lambda.batch.files import (
    check_destination,
    default_work_prefix,
    parse_s3_url,
    read_source,
    write_predictions,
)
from mnist_lambda.batch.run import BatchError, BatchResult, run_batch
from mnist_lambda.client import DEFAULT_MAX_ATTEMPTS, EndpointAuth
from mnist_lambda.commands.options import add_verbosity, log_verbosely

HELP = "predict more rows than one request can carry: chunk, upload, invoke, resume"
EXAMPLES = """examples:
  mnist-lambda predict-batch s3://my-bucket/inputs/big.npy --out labels.npy --local-stack <dir>
  mnist-lambda predict-batch digits.npy --out labels.json --url https://.../dev/predict \\
      --bucket my-bucket --output-prefix predictions/ --concurrency 8
  mnist-lambda predict-batch s3://my-bucket/inputs/big.npy --out scores.npz \\
      --url https://.../dev/predict --return probabilities
  (interrupted? run the same command again: answered chunks are not sent again)
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``mnist-lambda predict-batch`` options."""
    p.add_argument(
        "source",
        help="s3://bucket/key.npy, s3://bucket/prefix/ (every .npy under it, in key order) "
        "or a local .npy of (n, 784) uint8 pixels",
    )
    p.add_argument(
        "--out",
        required=True,
        metavar="PATH",
        help="predictions file (.npy or .json; with --return probabilities .json or .npz; "
        "local path or s3://)",
    )
    p.add_argument(
        "--return",
        dest="returned",
        choices=("labels", "probabilities"),
        default="labels",
        help="labels (default), or probabilities: the probability of every class as well, in "
        "the output as 'probabilities' and 'classes' (a .json object or .npz arrays)",
    )
    _add_endpoint_arguments(p)
    _add_chunk_arguments(p)
    add_verbosity(
        p,
        quiet="no progress bar",
        verbose="a line for each chunk's request (rows, status, seconds, retries, request id)",
    )


def _add_endpoint_arguments(p: argparse.ArgumentParser) -> None:
    """Where the endpoint is and where the chunks go."""
    group = p.add_argument_group("endpoint and S3")
    group.add_argument("--url", help="the POST /predict URL (default: the local stack's)")
    group.add_argument(
        "--local-stack",
        type=Path,
        metavar="STATE_DIR",
        help="use the local stack recorded in STATE_DIR (its URL, S3 and bucket)",
    )
    group.add_argument(
        "--auth",
        choices=("none", "iam", "api_key"),
        default=None,
        help="how --url authenticates (template.yaml): iam signs with SigV4 from the standard "
        "credential chain, api_key sends $MNIST_LAMBDA_API_KEY as x-api-key (default: none; "
        "with --local-stack, the stack's own caller or key)",
    )
    group.add_argument("--bucket", help="bucket for the chunks (default: the source's bucket)")
    group.add_argument(
        "--work-prefix",
        default=None,
        help="key prefix for the chunks; must be readable by the function (default: batch/ "
        "in the folder of an s3:// source, which the function reads already; else batch/)",
    )
    group.add_argument(
        "--output-prefix",
        default=None,
        help="ask the function to write each chunk's labels under this prefix (output_key; "
        "the template's OutputKeyPrefix, e.g. predictions/) instead of answering them",
    )


def _add_chunk_arguments(p: argparse.ArgumentParser) -> None:
    """How the rows are cut, called and resumed."""
    group = p.add_argument_group("chunks, calls and resuming")
    group.add_argument(
        "--concurrency", "-c", type=int, default=4, help="parallel calls (default 4)"
    )
    group.add_argument("--rows-per-chunk", type=int, default=None, help="fix the chunk size")
    group.add_argument(
        "--rows-per-second",
        type=float,
        default=None,
        help="the endpoint's throughput per call (default: measured with a probe call)",
    )
    group.add_argument(
        "--max-attempts",
        type=int,
        default=DEFAULT_MAX_ATTEMPTS,
        help=f"calls per chunk (default {DEFAULT_MAX_ATTEMPTS})",
    )
    group.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="where the progress record goes (default: the output's folder, or . for an s3:// "
        "output); an interrupted batch run again with the same arguments resumes from it",
    )
    group.add_argument(
        "--keep-chunks",
        action="store_true",
        help="leave the chunks in S3 and the progress record on disk",
    )


API_KEY_VARIABLE = "MNIST_LAMBDA_API_KEY"


@dataclass(frozen=True)
class _Endpoint:
    """The URL to call, an S3 client for the chunks and the bucket to use when none is given."""

    url: str
    s3: Any
    bucket: str | None
    auth: EndpointAuth | None = None


def main(args: argparse.Namespace) -> int:
    """Run ``predict-batch`` from parsed arguments; print a JSON summary."""
    if args.verbose:
        log_verbosely()
    probabilities = args.returned == "probabilities"
    try:
        check_destination(args.out, probabilities)
        endpoint = _endpoint(args)
    except ValueError as exc:
        return _usage_error(str(exc))
    pixels, keys = read_source(args.source, endpoint.s3)
    bucket = args.bucket or _source_bucket(args.source) or endpoint.bucket
    if not bucket:
        return _usage_error("give --bucket for a local source")
    try:
        result = _predict(args, pixels, endpoint, bucket, probabilities)
    except (BatchError, BotoCoreError, ClientError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        print("run the same command again to resume: answered chunks are kept", file=sys.stderr)
        return 1
    if result.state and not args.keep_chunks:
        shutil.rmtree(result.state, ignore_errors=True)
    summary = result.summary()
    summary["inputs"] = keys[:5] + (["..."] if len(keys) > 5 else [])
    print(json.dumps(summary, indent=2))
    return 0


def _usage_error(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def _endpoint(args: argparse.Namespace) -> _Endpoint:
    """The endpoint of ``--local-stack`` (its URL unless ``--url``, its S3) or of ``--url``;
    ValueError if neither is given or the local stack is not running."""
    if args.local_stack is None:
        if not args.url:
            raise ValueError("give --url or --local-stack")
        return _Endpoint(args.url, boto3.client("s3"), None, _url_auth(args.url, args.auth))
    info = local_stack.read(args.local_stack)
    if info is None:
        raise ValueError(f"no local stack running in {args.local_stack}")
    auth = local_stack.endpoint_auth(info)
    url = args.url or info.predict_url
    return _Endpoint(url, local_stack.s3_client(info), info.bucket, auth)


def _url_auth(url: str, auth: str | None) -> EndpointAuth | None:
    """``--auth`` for an AWS endpoint: SigV4 in the URL's region, or the key in the
    environment (never on the command line, where other users' ``ps`` would show it)."""
    if auth in (None, "none"):
        return None
    if auth == "api_key":
        if not (key := os.environ.get(API_KEY_VARIABLE, "")):
            raise ValueError(f"--auth api_key: set {API_KEY_VARIABLE} to the API key's value")
        return EndpointAuth.key(key)
    found = re.search(r"\.execute-api\.([a-z0-9-]+)\.amazonaws\.com", url)
    region = found.group(1) if found else boto3.session.Session().region_name
    if not region:
        raise ValueError("--auth iam: no region in the URL; set AWS_REGION")
    return EndpointAuth.iam(region)


def _source_bucket(source: str) -> str | None:
    return parse_s3_url(source)[0] if source.startswith("s3://") else None


def _predict(
    args: argparse.Namespace,
    pixels: np.ndarray,
    endpoint: _Endpoint,
    bucket: str,
    probabilities: bool,
) -> BatchResult:
    """The batch, and its predictions written to ``--out``."""
    state_dir = args.state_dir
    if state_dir is None:
        state_dir = Path(".") if args.out.startswith("s3://") else Path(args.out).parent
    work_prefix = args.work_prefix
    if work_prefix is None:
        work_prefix = default_work_prefix(args.source)
    result = run_batch(
        pixels,
        url=endpoint.url,
        auth=endpoint.auth,
        s3=endpoint.s3,
        bucket=bucket,
        work_prefix=work_prefix,
        output_prefix=args.output_prefix,
        concurrency=args.concurrency,
        rows_per_chunk=args.rows_per_chunk,
        rows_per_second=args.rows_per_second,
        max_attempts=args.max_attempts,
        progress=not args.quiet,
        keep_chunks=args.keep_chunks,
        state_dir=state_dir,
        destination=args.out,
        return_probabilities=probabilities,
    )
    result.output = write_predictions(
        result.labels,
        args.out,
        endpoint.s3,
        probabilities=result.probabilities,
        classes=result.classes,
    )
    return result
