"""``mnist-lambda predict-batch``: its options and its main."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

from mnist_lambda.batch.files import (
    check_destination,
    parse_s3_url,
    read_source,
    write_predictions,
)
from mnist_lambda.batch.run import BatchError, run_batch
from mnist_lambda.client import DEFAULT_MAX_ATTEMPTS

HELP = "predict more rows than one request can carry: chunk, upload, invoke, resume"
EXAMPLES = """examples:
  mnist-lambda predict-batch s3://my-bucket/inputs/big.npy -o labels.npy   # the local stack's URL
  mnist-lambda predict-batch digits.npy -o labels.json --url https://.../dev/predict \\
      --output-prefix predictions/ --concurrency 8
  mnist-lambda predict-batch s3://my-bucket/inputs/big.npy -o scores.npz --return probabilities
  (interrupted? run the same command again: answered chunks are not sent again)
"""


def add_arguments(p: Any) -> None:
    """The ``mnist-lambda predict-batch`` options."""
    p.add_argument(
        "source",
        help="s3://bucket/key.npy, s3://bucket/prefix/ (every .npy under it, in key order) "
        "or a local .npy of (n, 784) uint8 pixels",
    )
    p.add_argument(
        "--output",
        "-o",
        required=True,
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
    p.add_argument("--url", help="the POST /predict URL (default: the local stack's)")
    p.add_argument(
        "--local-stack",
        type=Path,
        metavar="STATE_DIR",
        help="use the local stack recorded in STATE_DIR (its URL, S3 and bucket)",
    )
    p.add_argument("--bucket", help="bucket for the chunks (default: the source's bucket)")
    p.add_argument(
        "--work-prefix",
        default=None,
        help="key prefix for the chunks; must be readable by the function (default: batch/ "
        "in the folder of an s3:// source, which the function reads already; else batch/)",
    )
    p.add_argument(
        "--output-prefix",
        default=None,
        help="ask the function to write each chunk's labels under this prefix (output_key; "
        "the template's OutputKeyPrefix, e.g. predictions/) instead of answering them",
    )
    p.add_argument("--concurrency", "-c", type=int, default=4, help="parallel calls (default 4)")
    p.add_argument("--rows-per-chunk", type=int, default=None, help="fix the chunk size")
    p.add_argument(
        "--rows-per-second",
        type=float,
        default=None,
        help="the endpoint's throughput per call (default: measured with a probe call)",
    )
    p.add_argument(
        "--max-attempts",
        type=int,
        default=DEFAULT_MAX_ATTEMPTS,
        help=f"calls per chunk (default {DEFAULT_MAX_ATTEMPTS})",
    )
    p.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="where the progress record goes (default: the output's folder, or . for an s3:// "
        "output); an interrupted batch run again with the same arguments resumes from it",
    )
    p.add_argument(
        "--keep-chunks",
        action="store_true",
        help="leave the chunks in S3 and the progress record on disk",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def main(args: Any) -> int:
    """Run ``predict-batch`` from parsed arguments; print a JSON summary."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    probabilities = getattr(args, "returned", "labels") == "probabilities"
    try:
        check_destination(args.output, probabilities)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    url = args.url
    if args.local_stack is not None:
        from mnist_lambda import local_stack

        info = local_stack.read(args.local_stack)
        if info is None:
            print(f"error: no local stack running in {args.local_stack}", file=sys.stderr)
            return 2
        s3 = local_stack.s3_client(info)
        url = url or info.predict_url
        default_bucket = info.bucket
    else:
        s3 = boto3.client("s3")
        default_bucket = None
    if not url:
        print("error: give --url or --local-stack", file=sys.stderr)
        return 2
    pixels, keys = read_source(args.source, s3)
    bucket = args.bucket or (
        parse_s3_url(args.source)[0] if args.source.startswith("s3://") else default_bucket
    )
    if not bucket:
        print("error: give --bucket for a local source", file=sys.stderr)
        return 2
    work_prefix = args.work_prefix
    if work_prefix is None:
        folder = parse_s3_url(args.source)[1] if args.source.startswith("s3://") else ""
        work_prefix = folder.rsplit("/", 1)[0] + "/batch/" if "/" in folder else "batch/"
    state_dir = args.state_dir
    if state_dir is None:
        state_dir = Path(".") if args.output.startswith("s3://") else Path(args.output).parent
    try:
        result = run_batch(
            pixels,
            url=url,
            s3=s3,
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
            destination=args.output,
            return_probabilities=probabilities,
        )
        result.output = write_predictions(
            result.labels,
            args.output,
            s3,
            probabilities=result.probabilities,
            classes=result.classes,
        )
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
