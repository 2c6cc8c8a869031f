"""The image that ships, built by Docker from the Dockerfile (through ``sam build``): the base
image it starts from, what its task root holds for each model format, and that this equals the
local stack's image-like task root package for package, on the same Python."""

from __future__ import annotations

import subprocess

import pytest

from mnist_lambda.image import base, build, contents, docker_engine

pytestmark = [pytest.mark.docker, pytest.mark.timeout(1800)]


def _in_image(image: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", "run", "--rm", "--entrypoint", argv[0], image, *argv[1:]],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_base_image_is_aws_or_a_labelled_stand_in(base_image: base.BaseImage) -> None:
    labels = docker_engine.image_labels(base_image.tag)
    assert labels is not None, f"{base_image.tag} is not in the engine"
    assert base_image.tag == base.base_tag()
    if base_image.stand_in:
        assert labels[base.STAND_IN_LABEL] == "true"
        version = base_image.tag.rsplit(":", 1)[1]
        assert labels[base.INPUTS_LABEL] == base.stand_in_inputs(version).digest()
    else:
        assert base.STAND_IN_LABEL not in labels


def test_the_stand_in_starts_as_aws_image_does(base_image: base.BaseImage) -> None:
    """Its entrypoint wants the handler as its one argument (exit 142, as AWS's), its Python has
    the standard library's compiled modules, and its configuration is the real image's."""
    if not base_image.stand_in:
        pytest.skip("AWS's own image is here: nothing stands in for it")
    no_handler = subprocess.run(
        ["docker", "run", "--rm", base_image.tag], capture_output=True, text=True, timeout=60
    )
    assert no_handler.returncode == 142, no_handler.stderr
    assert "handler name" in no_handler.stderr
    probe = "import ctypes, hashlib, json, sqlite3, ssl, zlib, sys; print(sys.version_info[:2])"
    python = _in_image(base_image.tag, "python", "-c", probe)
    assert python.returncode == 0, python.stderr
    version = tuple(int(v) for v in base_image.tag.rsplit(":", 1)[1].split("."))
    assert python.stdout.strip() == str(version)
    env = _in_image(base_image.tag, "env").stdout
    for line in ("LAMBDA_TASK_ROOT=/var/task", "LAMBDA_RUNTIME_DIR=/var/runtime", "TZ=:/etc/"):
        assert line in env


def test_a_stand_in_whose_inputs_changed_is_built_again(
    base_image: base.BaseImage, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not base_image.stand_in:
        pytest.skip("AWS's own image is here: it is never replaced")
    assert base.ensure_base().action == "found"  # unchanged inputs: nothing to do
    monkeypatch.setattr(base, "BUILDER_VERSION", base.BUILDER_VERSION + "-changed")
    changed = base.ensure_base()
    labels = docker_engine.image_labels(changed.tag) or {}
    assert changed.action == "rebuilt" and changed.stand_in
    monkeypatch.undo()
    version = changed.tag.rsplit(":", 1)[1]
    assert labels[base.INPUTS_LABEL] != base.stand_in_inputs(version).digest()
    assert base.ensure_base().action == "rebuilt"  # back to the inputs of this checkout
    assert base.ensure_base().action == "found"


def test_the_image_holds_the_app_the_model_and_only_the_runtime_it_needs(sam_project) -> None:
    listing = _in_image(sam_project.image, "ls", "/var/task", "/var/task/model")
    assert listing.returncode == 0, listing.stderr
    travels = [p.name for p in sam_project.model_path.parent.iterdir()]  # manifest, requirements
    for name in ("lambda_predict.py", "mnist_serving", *travels):
        assert name in listing.stdout.split(), listing.stdout
    imports = (
        "import importlib.util as u; "
        "print(sorted(m for m in ('onnxruntime', 'sklearn', 'scipy', 'pandas', 'IPython') "
        "if u.find_spec(m)))"
    )
    found = _in_image(sam_project.image, "python", "-c", imports)
    assert found.returncode == 0, found.stderr
    assert found.stdout.strip() == ("['onnxruntime']" if sam_project.kind == "onnx" else "[]")


def test_what_ships_equals_what_the_local_stack_runs(sam_project) -> None:
    """Package for package and on the same Python: a difference is a bug in one of them."""
    image = contents.image_task_root(sam_project.image)
    local = contents.local_task_root(sam_project.model_path)
    assert image.python == local.python
    assert image.packages == local.packages
    assert "numpy" in image.packages
    assert ("onnxruntime" in image.packages) == (sam_project.kind == "onnx")


def test_the_image_size_is_read_per_layer(sam_project, base_image) -> None:
    size = build.image_size(sam_project.image, base_image.tag)
    assert size.bytes > size.base_bytes > 0
    assert len(size.layer_bytes) > 1 and sum(size.layer_bytes) == pytest.approx(size.bytes, 0.05)
    assert size.added_bytes > 10_000_000  # numpy and boto3 at least
