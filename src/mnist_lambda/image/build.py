"""Build the function's image from the project's Dockerfile, with any trained model in it.

:func:`stage_context` lays out a build context exactly as the project root gives one to
``docker build .`` (the ``Dockerfile``, ``.dockerignore`` and ``lambda_app/``), with
``lambda_app/model/`` holding the given model (``.npz`` or ``.onnx``, its ``manifest.json`` and
``model-requirements.txt``); :func:`build_image` builds it on the base image that
:func:`mnist_lambda.image.base.ensure_base` provides; :func:`image_size` reads what it weighs.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from mnist_lambda.image import base, docker_engine
from mnist_lambda.local_stack import task_root
from mnist_lambda.paths import lambda_app_dir, project_root
from mnist_serving.loading import default_model_path

CONTEXT_FILES = ("Dockerfile", ".dockerignore")


def stage_context(dest: Path, model_path: Path | None = None) -> Path:
    """A copy of the project's build context in ``dest`` (made anew), serving ``model_path``
    (default: the model in ``lambda_app/model/``)."""
    root = project_root()
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    for name in CONTEXT_FILES:
        shutil.copy2(root / name, dest / name)
    ignore = shutil.ignore_patterns(*task_root.app_ignore_patterns(), "model")
    shutil.copytree(lambda_app_dir(), dest / "lambda_app", ignore=ignore)
    if model_path is None:
        model_path = _default_model(lambda_app_dir() / "model")
    task_root.stage_model(dest / "lambda_app" / "model", Path(model_path).resolve())
    return dest


def _default_model(model_dir: Path) -> Path:
    """The model the handler would serve from ``model_dir`` (its own rule), which must exist."""
    path = default_model_path(model_dir)
    if not path.is_file():
        raise FileNotFoundError(
            f"no trained model in {model_dir}: run the train step first "
            "(`mnist-lambda run --steps sample,train`)"
        )
    return path


@dataclass(frozen=True)
class ImageSize:
    """What an image weighs: uncompressed in all, per layer, and the part above its base."""

    tag: str
    bytes: int
    layer_bytes: tuple[int, ...]  # newest first, as `docker history` lists them
    base_bytes: int

    @property
    def added_bytes(self) -> int:
        return self.bytes - self.base_bytes


def image_size(tag: str, base_tag: str | None = None) -> ImageSize:
    """``tag``'s uncompressed size, its layers' sizes and its base's size."""
    size = int(docker_engine.run(["image", "inspect", "--format", "{{.Size}}", tag]).strip())
    history = docker_engine.run(["history", "--no-trunc", "--format", "{{json .}}", tag])
    layers = []
    for line in history.splitlines():
        if line.strip():
            layers.append(_parse_size(json.loads(line).get("Size", "0B")))
    base_tag = base_tag or base.base_tag()
    base_size = int(docker_engine.run(["image", "inspect", "--format", "{{.Size}}", base_tag]))
    return ImageSize(tag, size, tuple(layers), base_size)


def _parse_size(text: str) -> int:
    """``docker history``'s human sizes (``12.3MB``, ``0B``) in bytes (SI units, as Docker)."""
    units = {"B": 1, "kB": 10**3, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}
    for unit in sorted(units, key=len, reverse=True):
        if text.endswith(unit):
            return round(float(text[: -len(unit)]) * units[unit])
    return int(text)


def build_image(
    tag: str, *, model_path: Path | None = None, context: Path | None = None, quiet: bool = True
) -> str:
    """``docker build`` of the project's Dockerfile as ``tag`` (the base image made ready
    first); the context is staged in ``context`` (default: a folder under ``.lambda/``)."""
    base.ensure_base()
    context = context or project_root() / ".lambda" / "docker-context" / tag.replace(":", "-")
    stage_context(context, model_path)
    args = ["build", "--tag", tag, *(["--quiet"] if quiet else []), str(context)]
    return docker_engine.run(args).strip()
