"""Predict more rows than one request can carry: chunk, upload, invoke concurrently, reassemble.

One ``POST /predict`` has hard ceilings: the platform's (API Gateway's integration timeout and
request size, Lambda's response size: :mod:`mnist_lambda.aws_limits`) and the function's own
``Timeout`` and ``MAX_OBJECT_BYTES`` (read from the SAM template). The batch keeps every call
well inside all of them:

1. read the input (one ``.npy`` object, every ``.npy`` under an S3 prefix in key order, or a
   local ``.npy``) as ``(n, 784)`` uint8 rows (:mod:`.files`);
2. size chunks from the endpoint's measured throughput (:func:`plan_chunks` in :mod:`.plan`;
   the arithmetic is in its docstring and in ``docs/performance.md``);
3. upload each chunk as ``.npy`` under a work prefix the function may read, and call the
   endpoint for every chunk with a bounded thread pool through :class:`mnist_lambda.client.Client`
   (urllib3 retries of 429/502/503/504 with backoff and jitter) (:mod:`.run`);
4. keep every answered chunk in a progress record (:mod:`.progress`), so that an interrupted
   batch run again with the same arguments sends only the chunks still missing;
5. write one predictions file whose row ``i`` is the label of input row ``i``
   (``mnist-lambda predict-batch`` is :mod:`mnist_lambda.commands.predict_batch`); with
   ``--return probabilities`` (``run_batch(..., return_probabilities=True)``) the file also
   holds every row's class probabilities and the classes (a ``.json`` object or an ``.npz``
   of arrays).

Lambda's own concurrency is the scale-out engine: each concurrent call gets its own execution
environment. Locally, ``mnist-lambda serve --instances N`` stands in for it.
"""

from mnist_lambda.batch.files import (
    check_destination,
    default_work_prefix,
    load_npy,
    parse_s3_url,
    read_source,
    write_predictions,
)
from mnist_lambda.batch.plan import (
    DEFAULT_MAX_ROWS,
    JSON_BYTES_PER_LABEL,
    JSON_BYTES_PER_PROBABILITY_ROW,
    NPY_HEADER_BYTES,
    REQUEST_BODY_BYTES,
    SIZE_SAFETY,
    TIME_SAFETY,
    ChunkPlan,
    plan_chunks,
)
from mnist_lambda.batch.progress import Progress, batch_identity
from mnist_lambda.batch.run import BatchError, BatchResult, measure_throughput, run_batch

__all__ = [
    "DEFAULT_MAX_ROWS",
    "JSON_BYTES_PER_LABEL",
    "JSON_BYTES_PER_PROBABILITY_ROW",
    "NPY_HEADER_BYTES",
    "REQUEST_BODY_BYTES",
    "SIZE_SAFETY",
    "TIME_SAFETY",
    "BatchError",
    "BatchResult",
    "ChunkPlan",
    "Progress",
    "batch_identity",
    "check_destination",
    "default_work_prefix",
    "load_npy",
    "measure_throughput",
    "parse_s3_url",
    "plan_chunks",
    "read_source",
    "run_batch",
    "write_predictions",
]
