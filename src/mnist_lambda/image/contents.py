"""What ships beside what the local stack runs: the packages in each task root, and the Python.

The same probe runs in both places: inside the built image (``/var/task``, on the image's
Python) and on the local stack's image-like task root (``.lambda/``, on the Python the stack
mounts as ``/var/lang``). Any difference between the two is a bug in one of them.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

from mnist_lambda.image import docker_engine
from mnist_lambda.local_stack import task_root
from mnist_lambda.modeling import model_requirements
from mnist_lambda.paths import lambda_app_dir

IMAGE_TASK_ROOT = "/var/task"
PROBE = """
import importlib.metadata as md, json, platform, sys
dists = md.distributions(path=[sys.argv[1]])
print(json.dumps({"python": platform.python_version(),
                  "packages": {d.metadata["Name"].lower().replace("_", "-"): d.version
                               for d in dists}}))
"""


@dataclass(frozen=True)
class TaskRootContents:
    """A task root's installed distributions (normalised name -> version) and its Python."""

    where: str
    python: str
    packages: dict[str, str]


def _parse(where: str, out: str) -> TaskRootContents:
    data = json.loads(out.strip().splitlines()[-1])
    return TaskRootContents(where, data["python"], dict(sorted(data["packages"].items())))


def image_task_root(tag: str) -> TaskRootContents:
    """What image ``tag`` has in ``/var/task``, probed on its own Python."""
    out = docker_engine.run(
        ["run", "--rm", "--entrypoint", "python", tag, "-S", "-c", PROBE, IMAGE_TASK_ROOT],
        timeout=120,
    )
    return _parse(f"image {tag}", out)


def local_task_root(model_path: Path | None = None) -> TaskRootContents:
    """What the local stack's task root has for ``lambda_app/requirements.txt`` and the model's
    own requirements (beside ``model_path``), probed on the Python it runs the function on."""
    model_reqs = Path(model_path).with_name(model_requirements.FILE_NAME) if model_path else None
    built = task_root.build(lambda_app_dir() / "requirements.txt", model_requirements=model_reqs)
    assert built.deps_dir is not None  # lambda_app/requirements.txt is always there
    done = subprocess.run(
        [built.python.executable, "-S", "-c", PROBE, str(built.deps_dir)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return _parse(f"local stack {built.deps_dir}", done.stdout)


def comparison_text(tag: str, model_path: Path | None = None) -> str:
    """The two task roots side by side, and whether they are equal."""
    image, local = image_task_root(tag), local_task_root(model_path)
    names = sorted(set(image.packages) | set(local.packages))
    lines = [
        f"{'':28} {'image':>14} {'local stack':>14}",
        f"{'python':28} {image.python:>14} {local.python:>14}",
    ]
    for name in names:
        a, b = image.packages.get(name, "-"), local.packages.get(name, "-")
        lines.append(f"{name:28} {a:>14} {b:>14}{'' if a == b else '   <- differs'}")
    same = image.packages == local.packages and image.python == local.python
    lines.append("equal" if same else "NOT EQUAL: one of the two builds is wrong")
    return "\n".join(lines)
