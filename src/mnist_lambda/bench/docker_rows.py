"""The benchmark's Docker rows: the tutorial's image and ours, built and served by the real tools.

Each image is built by ``sam build`` on the same base image (``public.ecr.aws/lambda/python:3.12``,
AWS's or the project's labelled stand-in) and served by ``sam local start-api``, the function in
its container reading a local stack's S3 (moto, IAM enforced with the template's policy) at the
Docker bridge's gateway with the function principal's keys, as ``target=sam-local`` does. Ours is
the project's Dockerfile with the bench's model; the tutorial's is
``tutorial_app/Dockerfile`` (its requirements, handler and joblib'd k-NN), staged with the
project's own template. Per image: its uncompressed size, its layers and the bytes above the
base image; cold start (the first request to a new container: ``--warm-containers EAGER`` has
created and started it, the function's init runs on that request), warm latency at
``Profile.model_rows`` rows, accuracy on the held-out rows and agreement with the model
in-process. Both run at the model comparison's MemorySize (:func:`.models.memory_mb`).
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from mnist_lambda.bench.profile import Profile
from mnist_lambda.client import Client
from mnist_lambda.image import base, build, docker_engine, sam_local
from mnist_lambda.paths import project_root
from mnist_lambda.template import BUCKET_PARAMETER, MEMORY_PARAMETER, TEMPLATE_NAME, template_path

TUTORIAL_DIR = Path(__file__).resolve().parent / "tutorial_app"
TUTORIAL_CONTEXT = ("Dockerfile", ".dockerignore", "app.py", "requirements.txt")
REPOSITORIES = {"tutorial": "mnist-bench-tutorial", "ours": "mnist-bench-ours"}
"""Each image is tagged into a repository of its own before ``sam local`` runs it: SAM runs
containers from ``<repository>:rapid-<arch>``, which it rebuilds on the function's image at each
start, and ``sam build`` names the repository after the function's logical id, so every project
of this template (ours, the tutorial's, the pipeline's and the tests' sam-local ones) would
otherwise share that tag."""
PATH_LABEL = "Docker: sam build + sam local start-api"
EMULATOR_LABEL = "Docker-free emulator (local stack)"


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


def stage_tutorial_project(dest: Path, model: Path) -> Path:
    """A SAM project in ``dest`` (made anew) for the tutorial's image: the project's template
    and OpenAPI, and ``tutorial_app``'s Dockerfile, handler and requirements with ``model`` as
    ``model.joblib``. Its ``DockerTag`` names the model's SHA-256 prefix."""
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    for name in TUTORIAL_CONTEXT:
        shutil.copy2(TUTORIAL_DIR / name, dest / name)
    shutil.copy2(model, dest / "model.joblib")
    shutil.copytree(project_root() / "openapi", dest / "openapi")
    digest = hashlib.sha256((dest / "model.joblib").read_bytes()).hexdigest()[:12]
    template, found = re.subn(
        r"^(\s*DockerTag:\s*)\S+\s*$",
        rf"\g<1>tutorial-{digest}",
        template_path().read_text(encoding="utf-8"),
        flags=re.MULTILINE,
    )
    if found != 1:
        raise ValueError(f"{TEMPLATE_NAME}: expected one DockerTag, found {found}")
    (dest / TEMPLATE_NAME).write_text(template, encoding="utf-8")
    return dest


def build_project(project: Path, repository: str) -> str:
    """``sam build`` of ``project``, its image tagged ``repository:<tag>`` and the built template
    pointed at that; the image's tag."""
    built = sam_local.sam_build(project)
    text = built.read_text(encoding="utf-8")
    match = re.search(r"^(\s*ImageUri:\s*)(\S+)\s*$", text, flags=re.MULTILINE)
    if match is None:
        raise RuntimeError(f"{built}: no ImageUri")
    tag = f"{repository}:{match.group(2).rpartition(':')[2]}"
    docker_engine.run(["tag", match.group(2), tag], timeout=60)
    built.write_text(text[: match.start(2)] + tag + text[match.end(2) :], encoding="utf-8")
    return tag


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
def served(project: Path, stack: Any, parameters: dict[str, Any]) -> Iterator[Client]:
    """``sam local start-api`` on ``project`` (a new container, made at start) and a client on
    it (no retries: a benchmark counts failures); stopped on the way out."""
    env_vars = sam_local.write_env_vars(project, stack.s3_url)
    try:
        api = sam_local.start_api(
            project,
            parameters=parameters,
            env_vars=env_vars,
            credentials=stack.function_credentials,
            region=stack.region,
        )
        with Client(api.predict_url, max_attempts=1, timeout_s=120) as client:
            yield client
    finally:
        sam_local.stop_api(project)


def latency_row(
    project: Path, stack: Any, keys: dict[str, str], profile: Profile, memory: int
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


def tutorial_labels(model: Path, pixels: np.ndarray) -> np.ndarray:
    """The tutorial's k-NN in-process, on what its handler gets: a float64 DataFrame."""
    import joblib
    import pandas as pd

    return np.asarray(joblib.load(model).predict(pd.DataFrame(pixels.astype(np.float64))))


def _sides(prep: Any) -> list[dict[str, Any]]:
    """The two images: how to stage each SAM project, its request objects, its model's labels."""
    from mnist_lambda.bench import run as bench
    from mnist_serving.loading import load_model

    return [
        {
            "name": "tutorial",
            "model": "tutorial: scikit-learn k-NN (joblib)",
            "stage": lambda dest: stage_tutorial_project(dest, prep.tutorial_model),
            "object": bench.tutorial_object,
            "suffix": ".joblib",
            "expected": lambda: tutorial_labels(prep.tutorial_model, prep.x_test),
        },
        {
            "name": "ours",
            "model": "ours: PCA + k-NN (numpy .npz)",
            "stage": lambda dest: sam_local.stage_project(dest, prep.our_model),
            "object": bench.our_object,
            "suffix": ".npz",
            "expected": lambda: load_model(prep.our_model).predict(prep.x_test),
        },
    ]


def measure(profile: Profile, prep: Any, work: Path, say: Callable[[str], None]) -> dict[str, Any]:
    """Both images' rows (see the module docstring), with the base image they were built on."""
    from mnist_lambda import local_stack
    from mnist_lambda.bench import run as bench
    from mnist_lambda.bench.models import memory_mb

    base_image = base.ensure_base()
    say(f"docker: {base_image.describe()}")
    memory, rows = memory_mb(profile), bench.rows_for(prep.x_test, profile.model_rows)
    state, out = work / "stack-docker", []
    try:
        gateway = docker_engine.bridge_gateway()
        stack = local_stack.start(state, instances=0, s3_host=gateway, timeout=120)
        s3 = local_stack.s3_client(stack)
        for side in _sides(prep):
            keys = {}
            for label, pixels in (("rows", rows), ("heldout", prep.x_test)):
                keys[label] = f"bench/docker-{side['name']}-{label}{side['suffix']}"
                body = side["object"](pixels)
                s3.put_object(Bucket=stack.bucket, Key=keys[label], Body=body)
            say(f"docker: sam build of {side['model']}")
            started = time.perf_counter()
            project = side["stage"](work / f"sam-{side['name']}")
            tag = build_project(project, REPOSITORIES[side["name"]])
            build_seconds = time.perf_counter() - started
            say(f"docker: {side['model']} through sam local start-api")
            latency = latency_row(project, stack, keys, profile, memory)
            answered = latency.pop("answered")
            out.append(
                {
                    "model": side["model"],
                    "format": "joblib" if side["name"] == "tutorial" else "npz",
                    "path": PATH_LABEL,
                    **size_row(tag, base_image.tag),
                    "build_seconds": build_seconds,
                    **latency,
                    "accuracy": float(np.mean(answered == prep.y_test)),
                    "agreement_with_the_model": float(np.mean(answered == side["expected"]())),
                }
            )
    finally:
        local_stack.stop(state)
    base_info = {"tag": base_image.tag, "stand_in": base_image.stand_in}
    return {"base": base_info, "memory_mb": memory, "rows": out}


def markdown_table(docker: dict[str, Any], emulator_rows: list[dict[str, Any]]) -> str:
    """The Docker rows, each beside the emulator's row for the same model when there is one."""
    mb = 1024 * 1024
    n = docker["rows"][0]["rows"]
    lines = [
        "| model | path | image MiB | above base MiB (its non-empty layers, oldest first) | "
        f"cold start (ms, p50) | warm {n:,} rows p50 / p95 (ms) | accuracy | agreement |",
        "|---|---|---:|---|---:|---:|---:|---:|",
    ]
    emulator = {r["format"]: r for r in emulator_rows}
    for r in docker["rows"]:
        layers = " + ".join(
            f"{b / mb:,.1f}" if b >= mb / 10 else "<0.1" for b in r["layer_bytes_above_base"] if b
        )
        lines.append(
            f"| {r['model']} | {r['path']} | {r['image_bytes'] / mb:,.1f} | "
            f"{r['above_base_bytes'] / mb:,.1f} ({layers}) | "
            f"{r['cold_first_response_ms_p50']:,.0f} | {r['warm_ms_p50']:,.0f} / "
            f"{r['warm_ms_p95']:,.0f} | {r['accuracy']:.4f} | "
            f"{r['agreement_with_the_model']:.2%} |"
        )
        if (e := emulator.get(r["format"])) is not None and e["rows"] == n:
            agreement = e["agreement_with_the_model"]
            lines.append(
                f"| {e['model']} | {EMULATOR_LABEL} | - | {e['shipped_bytes']['total'] / mb:,.1f} "
                f"(shipped: requirements + code + model) | {e['cold_first_response_ms_p50']:,.0f} "
                f"| {e['warm_ms_p50']:,.0f} / {e['warm_ms_p95']:,.0f} | {e['accuracy']:.4f} | "
                f"{'-' if agreement is None else f'{agreement:.2%}'} |"
            )
    return "\n".join(lines)


def markdown_lines(results: dict[str, Any]) -> list[str]:
    """The Docker part of ``results.md``: the table, or why there is none."""
    docker = results.get("docker")
    if not docker:
        return []
    if "skipped" in docker:
        return ["", f"Docker rows (sam build + sam local start-api): {docker['skipped']}."]
    kind = "a labelled STAND-IN" if docker["base"]["stand_in"] else "AWS's image"
    return [
        "",
        f"The tutorial's image and ours, built by `sam build` on {docker['base']['tag']} "
        f"({kind}) and served by `sam local start-api` at {docker['memory_mb']:,} MB, beside the "
        "Docker-free emulator's rows for the same models (cold start: the first request to a "
        "new container; agreement: the endpoint's labels against the model's own in-process):",
        "",
        markdown_table(docker, results.get("models") or []),
    ]
