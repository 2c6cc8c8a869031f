"""Dockerfile, .dockerignore and lambda_app/requirements.txt: lint-clean, nothing of the dev
environment gets in, and the pinned runtime dependencies equal poetry.lock and fit the image."""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from dockerignore import docker_ignored, dockerignore_patterns
from lock_pins import lock_packages, normalize, requirement_pins
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from repo_paths import LAMBDA_APP, ROOT

from mnist_lambda.modeling import model_requirements

DOCKERFILE = ROOT / "Dockerfile"
HADOLINT = Path(sys.executable).parent / "hadolint"

# glibc of the AWS Lambda Python base images: python3.11 and older are Amazon Linux 2,
# python3.12 and newer Amazon Linux 2023.
IMAGE_GLIBC = {"3.11": (2, 26), "3.12": (2, 34), "3.13": (2, 34), "3.14": (2, 34)}
LEGACY_MANYLINUX = {"manylinux1": (2, 5), "manylinux2010": (2, 12), "manylinux2014": (2, 17)}

DEV_ONLY = (
    "jupyter", "ipykernel", "notebook", "nbconvert", "nbstripout", "papermill", "ipynb",
    "pytest", "ruff", "poetry", "pyproject", "cfn-lint", "hadolint", "aws-sam-cli", "moto",
    "scikit-learn", "sklearn", "scipy", "pandas", "matplotlib", "mlxtend", "tqdm", "joblib",
    ".venv", "tests/", "src/", "notebooks", "outputs",
)  # fmt: skip


def instructions(path: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` pairs, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, args = line.partition(" ")
        out.append((keyword.upper(), " ".join(args.split())))
    return out


def image_python() -> str:
    args = dict(a.split("=", 1) for k, a in instructions() if k == "ARG" and "=" in a)
    (base,) = [a for k, a in instructions() if k == "FROM"]
    assert base == "public.ecr.aws/lambda/python:${PYTHON_VERSION}"
    return args["PYTHON_VERSION"].split("@")[0]


# --- Dockerfile ------------------------------------------------------------------------------


def test_hadolint_passes():
    result = subprocess.run(
        [str(HADOLINT), str(DOCKERFILE)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_hadolint_ignore_is_justified():
    lines = DOCKERFILE.read_text().splitlines()
    for i, line in enumerate(lines):
        if "hadolint ignore" in line:
            before = lines[i - 1].strip() if i else ""
            assert before.startswith("#") and len(before) > 20, f"unjustified: {line}"


def test_base_image_is_a_lambda_python_within_the_project_range():
    version = image_python()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert version in SpecifierSet(project["requires-python"]), version
    assert version in IMAGE_GLIBC


def test_only_lambda_app_is_copied_and_nothing_of_the_dev_environment():
    steps = instructions()
    assert not [a for k, a in steps if k == "ADD"], "use COPY"
    for keyword, args in steps:
        if keyword == "COPY":
            *sources, _ = [a for a in args.split() if not a.startswith("--")]
            assert all(s.startswith("lambda_app/") for s in sources), args
    text = " ".join(a.lower() for _, a in steps)
    for word in DEV_ONLY:
        assert word not in text, word


def test_pip_installs_only_the_requirements_without_cache():
    runs = [a for k, a in instructions() if k == "RUN" and "pip install" in a]
    assert len(runs) == 1
    run = runs[0]
    assert "--no-cache-dir" in run
    assert '--target "${LAMBDA_TASK_ROOT}"' in run
    assert "-r /tmp/requirements.txt" in run
    assert '-r "$model_requirements"' in run  # an ONNX model's runtime, when it has one
    copies = [a for k, a in instructions() if k == "COPY"]
    assert "lambda_app/requirements.txt lambda_app/model/model-requirements.tx[t] /tmp/" in copies


def test_cmd_is_the_handler():
    (cmd,) = [a for k, a in instructions() if k == "CMD"]
    assert json.loads(cmd) == ["lambda_predict.lambda_handler"]
    assert (LAMBDA_APP / "lambda_predict.py").is_file()


# --- .dockerignore ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        ".venv/bin/python",
        ".git/HEAD",
        ".tools/bin/poetry",
        "notebooks/01_train.ipynb",
        "outputs/run-1/model.npz",
        "tests/component/handler/test_handler.py",
        "src/mnist_lambda/cli.py",
        "pyproject.toml",
        "poetry.lock",
        "events/predict_npy.json",
        "template_no_auth.yaml",
        ".aws-sam/build/template.yaml",
        "lambda_app/__pycache__/lambda_predict.cpython-311.pyc",
        "lambda_app/mnist_serving/__pycache__/model.cpython-311.pyc",
        "lambda_app/.ipynb_checkpoints/scratch-checkpoint.ipynb",
        "lambda_app/model/model.npz.tmp",
    ],
)
def test_dockerignore_keeps_out(path):
    assert docker_ignored(path, dockerignore_patterns())


@pytest.mark.parametrize(
    "path",
    [
        "lambda_app/lambda_predict.py",
        "lambda_app/requirements.txt",
        "lambda_app/mnist_serving/model.py",
        "lambda_app/mnist_serving/payload.py",
        "lambda_app/model/model.npz",
        "lambda_app/model/manifest.json",
    ],
)
def test_dockerignore_lets_in(path):
    assert not docker_ignored(path, dockerignore_patterns())


def test_the_real_build_context_is_lambda_app_source_only():
    patterns = dockerignore_patterns()
    kept = []
    for folder, dirs, files in os.walk(ROOT):
        rel = Path(folder).relative_to(ROOT).as_posix()
        dirs[:] = [d for d in dirs if rel != "." or d not in {".git", ".venv", ".tools"}]
        for name in files:
            path = name if rel == "." else f"{rel}/{name}"
            if not docker_ignored(path, patterns):
                kept.append(path)
    assert kept, "the context would be empty"
    for path in kept:
        assert path.startswith("lambda_app/"), path
        assert not path.endswith((".pyc", ".ipynb")), path


# --- requirements.txt ------------------------------------------------------------------------


@pytest.fixture(params=["npz model", "onnx model"])
def image_pins(request, tmp_path) -> dict[str, str]:
    """What the image installs: lambda_app/requirements.txt, plus an ONNX model's own."""
    pins = requirement_pins()
    if request.param == "onnx model":
        extra = tmp_path / model_requirements.FILE_NAME
        extra.write_text(model_requirements.onnx_requirements())
        pins |= requirement_pins(extra)
        assert "onnxruntime" in pins
    return pins


def test_every_pin_equals_poetry_lock(image_pins):
    locked = lock_packages()
    pins = image_pins
    assert "numpy" in pins
    for name, version in pins.items():
        assert name in locked, f"{name} is not in poetry.lock"
        assert version == locked[name]["version"], f"{name}: {version} != lock"


def test_runtime_requirements_are_runtime_only():
    text = (LAMBDA_APP / "requirements.txt").read_text().lower()
    body = "\n".join(line.split("#", 1)[0] for line in text.splitlines())
    for word in DEV_ONLY:
        assert word not in body, word


def test_the_pins_are_a_closed_set(image_pins):
    """pip resolves nothing beyond the pins: every dependency of a pin is pinned too."""
    pins = image_pins
    environment = {
        "python_version": image_python(),
        "sys_platform": "linux",
        "platform_system": "Linux",
        "platform_machine": "x86_64",
        "extra": "",
    }
    for name in pins:
        for spec in importlib.metadata.requires(name) or []:
            req = Requirement(spec)
            if req.marker and not Marker(str(req.marker)).evaluate(environment):
                continue
            assert normalize(req.name) in pins, f"{name} needs {req.name}, which is not pinned"
            assert pins[normalize(req.name)] in req.specifier, f"{name} needs {req}"


def _fits(filename: str, python: str, glibc: tuple[int, int]) -> bool:
    if not filename.endswith(".whl"):
        return False
    *_, py_tag, abi_tag, platform_tag = filename[:-4].split("-")
    if platform_tag == "any":
        return "py3" in py_tag.split(".")
    cp = "cp" + python.replace(".", "")
    if cp not in py_tag.split(".") or abi_tag not in (cp, "abi3"):
        return False
    for platform in platform_tag.split("."):
        if not platform.endswith("_x86_64"):
            continue
        legacy = platform.removesuffix("_x86_64")
        if legacy in LEGACY_MANYLINUX:
            return LEGACY_MANYLINUX[legacy] <= glibc
        match = re.fullmatch(r"manylinux_(\d+)_(\d+)_x86_64", platform)
        if match and (int(match[1]), int(match[2])) <= glibc:
            return True
    return False


def test_every_pin_has_a_wheel_for_the_image(image_pins):
    """The Dockerfile installs with --only-binary: each locked version needs a wheel for the
    image's Python, x86_64 and glibc. (This is why the image is not python:3.11: Amazon Linux
    2's glibc 2.26 is older than numpy 2.4's manylinux_2_28 wheels need.)"""
    python = image_python()
    glibc = IMAGE_GLIBC[python]
    locked = lock_packages()
    for name in image_pins:
        files = locked[name]["files"]
        assert any(_fits(f, python, glibc) for f in files), (
            f"{name} {locked[name]['version']}: no wheel for python {python}, x86_64, glibc "
            f"{glibc[0]}.{glibc[1]} in poetry.lock"
        )
