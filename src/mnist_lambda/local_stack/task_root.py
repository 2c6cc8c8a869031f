"""The function's files as the container image has them, built without Docker.

:func:`build` pip-installs what the Dockerfile does (``lambda_app/requirements.txt``, with its
flags) and the runtime interface client under ``.lambda/pythonX.Y/`` during set-up, for the
image's platform, so that ``serve`` works offline; :func:`stage_app` copies ``lambda_app/`` (less
``.dockerignore``) for one deployment. The function runs on a CPython of the image's version if
this machine has one, else on this interpreter's base installation, and the stack says so.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from mnist_lambda.modeling import model_requirements
from mnist_lambda.paths import project_root

BUILD_DIR_NAME = ".lambda"
RUNTIME_CLIENT = "awslambdaric"
IMAGE_GLIBC = (2, 34)  # Amazon Linux 2023, the base of the python:3.12 Lambda image
_ARCH = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64"}


class TaskRootError(RuntimeError):
    """The task root cannot be built or is missing; the message says what to run."""


@dataclass(frozen=True)
class ImageRecipe:
    """What the Dockerfile says about the image: its Python version and pip flags."""

    python_version: str
    pip_flags: tuple[str, ...]


def read_dockerfile(path: Path | None = None) -> ImageRecipe:
    """The Python version (``ARG PYTHON_VERSION``) and the ``pip install`` flags."""
    text = (path or project_root() / "Dockerfile").read_text(encoding="utf-8")
    text = re.sub(r"\\\n", " ", text)
    version = re.search(r"^ARG PYTHON_VERSION=(\d+\.\d+)", text, re.MULTILINE)
    pip = re.search(r"\bpip install\s+([^&\n]*)", text)
    if version is None or pip is None:
        raise TaskRootError(f"{path or 'Dockerfile'}: no ARG PYTHON_VERSION or pip install")
    flags, words = [], shlex.split(pip.group(1))
    while words:
        word = words.pop(0)
        if word in ("--target", "-t", "-r", "--requirement"):
            words.pop(0)  # the image's paths, not ours
        elif word.startswith("-"):
            flags.append(word)
    return ImageRecipe(version.group(1), tuple(flags))


@dataclass(frozen=True)
class Python:
    """An interpreter installation to run the function on (mounted as ``/var/lang``)."""

    executable: str  # the real binary, under prefix
    prefix: str  # sys.base_prefix: never a virtualenv
    version: str  # "3.12"


@functools.cache  # an interpreter does not change while this process runs
def _probe(executable: str) -> Python | None:
    code = (
        "import os, sys; v = sys.version_info; "
        "exe = os.path.join(sys.base_prefix, 'bin', f'python{v[0]}.{v[1]}'); "
        "print(exe if os.path.exists(exe) else os.path.realpath(sys.executable)); "
        "print(sys.base_prefix); print(f'{v[0]}.{v[1]}')"
    )
    try:
        out = subprocess.run(
            [executable, "-S", "-c", code], capture_output=True, text=True, timeout=30, check=True
        ).stdout.split("\n")
    except (OSError, subprocess.SubprocessError):
        return None
    return Python(*out[:3])


@functools.cache
def find_python(version: str) -> Python | None:
    """An installed CPython ``version`` (``$LAMBDA_PYTHON``, ``pythonX.Y`` on PATH, pyenv)."""
    candidates = [os.environ.get("LAMBDA_PYTHON", ""), shutil.which(f"python{version}") or ""]
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    candidates += sorted(map(str, pyenv.glob(f"{version}.*/bin/python{version}")), reverse=True)
    for candidate in filter(None, candidates):
        if (found := _probe(candidate)) is not None and found.version == version:
            return found
    return None


def _platform_flags(version: str) -> list[str]:
    arch = _ARCH.get(platform.machine().lower(), platform.machine())
    major, newest = IMAGE_GLIBC
    tags = [f"manylinux_{major}_{minor}_{arch}" for minor in range(newest, 16, -1)]
    flags = ["--python-version", version, "--implementation", "cp"]
    flags += ["--abi", f"cp{version.replace('.', '')}"]
    return flags + [f for tag in [*tags, f"manylinux2014_{arch}"] for f in ("--platform", tag)]


def _runtime_pins() -> list[str]:
    """``awslambdaric`` and its requirements at the versions installed from poetry.lock."""
    pins = [f"{RUNTIME_CLIENT}=={importlib.metadata.version(RUNTIME_CLIENT)}"]
    for req in importlib.metadata.requires(RUNTIME_CLIENT) or []:
        name = re.split(r"[<>=!~;\[\s]", req, maxsplit=1)[0]
        pins.append(f"{name}=={importlib.metadata.version(name)}")
    return pins


def _install(dest: Path, python: Python, args: list[str], flags: tuple[str, ...]) -> Path:
    """``pip install`` ``args`` into ``dest`` for the image's platform, then byte-compile."""
    if (dest / ".complete").exists():
        return dest
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    flags = tuple(f for f in flags if f != "--no-cache-dir")  # pip's cache may serve offline
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", *flags, "--no-compile"]
    cmd += [*_platform_flags(python.version), "--target", str(tmp), *args]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise TaskRootError(
            f"pip could not build {dest} (it needs a package registry once; run `make setup` "
            f"where one is reachable):\n{done.stderr.strip()}"
        )
    # the image's pip byte-compiles with the image's Python; the task root is read-only later
    subprocess.run([python.executable, "-m", "compileall", "-q", "-j0", str(tmp)], check=True)
    (tmp / ".complete").write_text(json.dumps(args) + "\n")
    shutil.rmtree(dest, ignore_errors=True)
    os.replace(tmp, dest)
    return dest


def _digest(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Build:
    """The pieces the image adds to ``lambda_app/``: Python, runtime client, requirements."""

    python: Python
    runtime_dir: Path  # /var/runtime
    deps_dir: Path | None  # what the Dockerfile pip-installs into the task root
    image_python: str  # the Dockerfile's Python version

    @property
    def matches_image(self) -> bool:
        return self.python.version == self.image_python


def build(
    requirements: Path | None, root: Path | None = None, model_requirements: Path | None = None
) -> Build:
    """Build, or reuse when up to date, the runtime client and ``requirements`` (plus the model's
    ``model_requirements``, if any) under ``.lambda/``, each in a folder named after what it was
    built from (a change builds anew)."""
    root = root or project_root() / BUILD_DIR_NAME
    recipe = read_dockerfile()  # its Python if this machine has it, else this one's base
    if (python := find_python(recipe.python_version) or _probe(sys.executable)) is None:
        raise TaskRootError(f"cannot describe {sys.executable}")
    base = root / f"python{python.version}"
    pins = _runtime_pins()
    runtime = _install(base / f"runtime-{_digest(pins)}", python, pins, recipe.pip_flags)
    files = [Path(f) for f in (requirements, model_requirements) if f and Path(f).is_file()]
    deps = None
    if files:
        texts = [f.read_text(encoding="utf-8") for f in files]
        dest = base / f"task-{_digest(*texts, recipe.pip_flags)}"
        args = [arg for f in files for arg in ("-r", str(f))]
        deps = _install(dest, python, args, recipe.pip_flags)
    return Build(python, runtime, deps, recipe.python_version)


def app_ignore_patterns() -> list[str]:
    """The ``lambda_app/**/`` patterns of ``.dockerignore``: what no copy of the app takes."""
    lines = (line.strip() for line in (project_root() / ".dockerignore").read_text().split("\n"))
    return [ln[14:] for ln in lines if ln.startswith("lambda_app/**/")]  # as Docker would


def stage_model(model_dir: Path, model_path: Path) -> None:
    """``model_dir`` (made anew) holds ``model_path`` and the files that travel with it: its
    ``manifest.json`` and ``model-requirements.txt``, when they are beside it."""
    shutil.rmtree(model_dir, ignore_errors=True)
    model_dir.mkdir(parents=True, mode=0o755)
    shutil.copy2(model_path, model_dir / model_path.name)
    for name in ("manifest.json", model_requirements.FILE_NAME):
        if (beside := model_path.with_name(name)).exists():
            shutil.copy2(beside, model_dir / name)


def stage_app(app_dir: Path, dest: Path, python: Python, model_path: Path | None = None) -> Path:
    """Copy ``app_dir`` to ``dest`` as ``COPY lambda_app/`` would (modes kept), byte-compile it.
    ``model_path`` (with the ``manifest.json`` and model requirements beside it) replaces
    ``model/``."""
    shutil.copytree(app_dir, dest, ignore=shutil.ignore_patterns(*app_ignore_patterns()))
    if model_path is not None:
        stage_model(dest / "model", Path(model_path))
    subprocess.run([python.executable, "-m", "compileall", "-q", str(dest)], check=False)
    dest.chmod(0o755)
    return dest


SETUP_REQUIREMENTS = (
    "lambda_app/requirements.txt",  # what ships
    "src/mnist_lambda/tutorial/app/requirements.txt",  # the tutorial's image (bench, tune)
)


def main() -> int:
    """``python -m mnist_lambda.local_stack.task_root``: build ``.lambda/`` (a set-up step),
    with the ONNX runtime too, so that serving an ONNX model also works offline."""
    onnx = project_root() / BUILD_DIR_NAME / model_requirements.FILE_NAME
    onnx.parent.mkdir(exist_ok=True)
    onnx.write_text(model_requirements.onnx_requirements())
    builds = [(r, None) for r in SETUP_REQUIREMENTS] + [(SETUP_REQUIREMENTS[0], onnx)]
    for requirements, model in builds:
        found = build(project_root() / requirements, model_requirements=model)
        note = "" if found.matches_image else f"; the image has {found.image_python}: not found"
        extra = " + an ONNX model's" if model else ""
        print(f"setup: task root for {requirements}{extra} on Python {found.python.version}{note}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
