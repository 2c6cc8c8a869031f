"""The benchmark's Docker rows: the tutorial's image and ours, built and served by the real tools.

Each image is built by ``sam build`` on the same base image (``public.ecr.aws/lambda/python:3.12``,
AWS's or the project's labelled stand-in), tagged into a repository of its own
(:func:`mnist_lambda.image.sam_local.sam_build`) and served by ``sam local start-api``, the
function in its container reading a local stack's S3 (moto, IAM enforced with the template's
policy) at the Docker bridge's gateway with the function principal's keys, as
``target=sam-local`` does. Ours is the project's Dockerfile with the bench's model; the
tutorial's is ``mnist_lambda/tutorial/app/Dockerfile`` (its requirements, handler and joblib'd
k-NN), staged with the project's own template. Per image: its uncompressed size, its layers and
the bytes above the base image; cold start (the first request to a new container:
``--warm-containers EAGER`` has created and started it, the function's init runs on that
request), warm latency at ``Profile.model_rows`` rows, accuracy on the held-out rows and
agreement with the model in-process. Both run at the model comparison's MemorySize
(:func:`.models.memory_mb`).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mnist_lambda import local_stack
from mnist_lambda.bench.models import OUR_MODEL, TUTORIAL_MODEL, memory_mb
from mnist_lambda.bench.objects import our_object
from mnist_lambda.bench.prepare import Prepared, rows_for
from mnist_lambda.bench.profile import Profile
from mnist_lambda.client import Client
from mnist_lambda.image import base, build, docker_engine, sam_local
from mnist_lambda.template import BUCKET_PARAMETER, MEMORY_PARAMETER
from mnist_lambda.tutorial.deployment import stage_tutorial_project
from mnist_lambda.tutorial.model import tutorial_labels, tutorial_object
from mnist_serving.loading import load_model

PATH_LABEL = "Docker: sam build + sam local start-api"


@dataclass(frozen=True)
class ImageSide:
    """One image: how to stage its SAM project, its request objects, its model's labels."""

    name: str
    model: str
    format: str
    stage: Callable[[Path], Path]
    make_object: Callable[[np.ndarray], bytes]
    suffix: str
    expected: Callable[[], np.ndarray]
    """The labels of the model in-process on the held-out rows."""


def image_sides(prep: Prepared) -> list[ImageSide]:
    """The tutorial's image and ours, with the bench's models."""
    return [
        ImageSide(
            name="tutorial",
            model=TUTORIAL_MODEL,
            format="joblib",
            stage=lambda dest: stage_tutorial_project(dest, prep.tutorial_model),
            make_object=tutorial_object,
            suffix=".joblib",
            expected=lambda: tutorial_labels(prep.tutorial_model, prep.x_test),
        ),
        ImageSide(
            name="ours",
            model=OUR_MODEL,
            format="npz",
            stage=lambda dest: sam_local.stage_project(dest, prep.our_model),
            make_object=our_object,
            suffix=".npz",
            expected=lambda: load_model(prep.our_model).predict(prep.x_test),
        ),
    ]


def skip_reason(requested: bool | None) -> str | None:
    """Why the Docker rows do not run (None: they do). ``requested``: True (``--docker``, an
    error without an engine and a base image), None (when there are) or False (``--no-docker``)."""
    if requested is False:
        return "skipped: not asked for (--no-docker)"
    problem = docker_engine.engine_problem()
    if problem is None and (why := base.base_problem()) is not None:
        problem = f"{why[0]} ({why[1]})"
    if problem is None:
        return None
    if requested:
        raise RuntimeError(f"--docker: {problem}")
    return f"skipped: {problem}"


def size_row(tag: str, base_tag: str) -> dict[str, Any]:
    """The image's bytes: in all, above the base image, and the layers above it (oldest first)."""
    size, base_size = build.image_size(tag, base_tag), build.image_size(base_tag, base_tag)
    own = size.layer_bytes[: len(size.layer_bytes) - len(base_size.layer_bytes)]
    return {
        "image": tag,
        "image_bytes": size.bytes,
        "base_bytes": size.base_bytes,
        "above_base_bytes": size.added_bytes,
        "layer_bytes_above_base": list(reversed(own)),
    }


@contextlib.contextmanager
def served(
    project: Path, stack: local_stack.StackInfo, parameters: dict[str, Any]
) -> Iterator[Client]:
    """``sam local start-api`` on ``project`` (a new container, made at start) and a client on
    it (no retries: a benchmark counts failures); stopped on the way out."""
    try:
        api = sam_local.start_api_on_stack(project, stack, parameters)
        with Client(api.predict_url, max_attempts=1, timeout_s=120) as client:
            yield client
    finally:
        sam_local.stop_api(project)


def latency_row(
    project: Path,
    stack: local_stack.StackInfo,
    keys: dict[str, str],
    profile: Profile,
    memory: int,
) -> dict[str, Any]:
    """Cold starts (a new ``start-api`` each), then warm calls and the held-out rows (last one)."""
    parameters = {BUCKET_PARAMETER: stack.bucket, MEMORY_PARAMETER: memory}
    cold: list[float] = []
    for attempt in range(profile.cold_repeats):
        with served(project, stack, parameters) as client:
            cold.append(client.predict(stack.bucket, keys["rows"]).seconds * 1000)
            if attempt < profile.cold_repeats - 1:
                continue
            warm = [
                client.predict(stack.bucket, keys["rows"]).seconds * 1000
                for _ in range(profile.repeats)
            ]
            answered = client.predict(stack.bucket, keys["heldout"]).labels
    return {
        "memory_mb": memory,
        "rows": profile.model_rows,
        "cold_first_response_ms": cold,
        "cold_first_response_ms_p50": float(np.median(cold)),
        "warm_ms_p50": float(np.percentile(warm, 50)),
        "warm_ms_p95": float(np.percentile(warm, 95)),
        "answered": answered,
    }


def upload_objects(
    side: ImageSide, stack: local_stack.StackInfo, objects: dict[str, np.ndarray]
) -> dict[str, str]:
    """Each of ``objects`` (label: pixels) as the side's request object in the stack's bucket;
    the keys by label."""
    s3 = local_stack.s3_client(stack)
    keys = {}
    for label, pixels in objects.items():
        keys[label] = f"bench/docker-{side.name}-{label}{side.suffix}"
        s3.put_object(Bucket=stack.bucket, Key=keys[label], Body=side.make_object(pixels))
    return keys


def image_row(
    side: ImageSide,
    stack: local_stack.StackInfo,
    keys: dict[str, str],
    prep: Prepared,
    profile: Profile,
    work: Path,
    say: Callable[[str], None],
) -> dict[str, Any]:
    """One image built (``sam build``), measured and served (``sam local start-api``)."""
    say(f"docker: sam build of {side.model}")
    started = time.perf_counter()
    project = side.stage(work / f"sam-{side.name}")
    sam_local.sam_build(project)
    build_seconds = time.perf_counter() - started
    say(f"docker: {side.model} through sam local start-api")
    latency = latency_row(project, stack, keys, profile, memory_mb(profile))
    answered = latency.pop("answered")
    return {
        "model": side.model,
        "format": side.format,
        "path": PATH_LABEL,
        **size_row(sam_local.built_image(project), base.base_tag()),
        "build_seconds": build_seconds,
        **latency,
        "accuracy": float(np.mean(answered == prep.y_test)),
        "agreement_with_the_model": float(np.mean(answered == side.expected())),
    }


def measure(
    profile: Profile, prep: Prepared, work: Path, say: Callable[[str], None]
) -> dict[str, Any]:
    """Both images' rows (see the module docstring), with the base image they were built on."""
    base_image = base.ensure_base()
    say(f"docker: {base_image.describe()}")
    objects = {"rows": rows_for(prep.x_test, profile.model_rows), "heldout": prep.x_test}
    state, rows = work / "stack-docker", []
    try:
        gateway = docker_engine.bridge_gateway()
        stack = local_stack.start(state, instances=0, s3_host=gateway, timeout=120)
        for side in image_sides(prep):
            keys = upload_objects(side, stack, objects)
            rows.append(image_row(side, stack, keys, prep, profile, work, say))
    finally:
        local_stack.stop(state)
    base_info = {"tag": base_image.tag, "stand_in": base_image.stand_in}
    return {"base": base_info, "memory_mb": memory_mb(profile), "rows": rows}
