"""``mnist-lambda bench``'s Docker rows on small data: the tutorial's image and ours, built by
``sam build`` on the same base image and served by ``sam local start-api``, against a local
stack's S3 at the Docker bridge's gateway."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from repo_paths import ROOT

from mnist_lambda import local_stack
from mnist_lambda.bench import docker_rows
from mnist_lambda.bench.model_tables import docker_lines
from mnist_lambda.bench.prepare import prepare
from mnist_lambda.bench.profile import Profile
from mnist_lambda.image import base, sam_local
from mnist_lambda.template import TEMPLATE_NAME
from mnist_lambda.template.reader import function_settings

pytestmark = [pytest.mark.docker, pytest.mark.timeout(1800)]


@pytest.fixture(scope="module")
def bench(tmp_path_factory, mnist_source) -> tuple[Profile, Path, dict[str, Any]]:
    """The quick profile's data (3,000 digits: 2,400 train, 600 held out) through the Docker
    part of the bench."""
    profile = Profile.quick()
    profile.cold_repeats = 2  # two start-api in a row: the second one's container is new too
    work = tmp_path_factory.mktemp("bench-docker")
    prep = prepare(profile, mnist_source.data_source, work)
    return profile, work, docker_rows.measure(profile, prep, work, say=lambda _: None)


def test_rows_have_sane_values(bench) -> None:
    profile, work, docker = bench
    assert docker["base"]["tag"] == base.base_tag()
    assert docker["memory_mb"] == function_settings().function.memory_size
    tutorial, ours = docker["rows"]
    assert (tutorial["format"], ours["format"]) == ("joblib", "npz")
    for row in docker["rows"]:
        assert row["path"] == docker_rows.PATH_LABEL and row["rows"] == profile.model_rows
        assert row["image_bytes"] > row["base_bytes"] > 0
        assert row["above_base_bytes"] == row["image_bytes"] - row["base_bytes"]
        # docker history rounds each layer to three significant digits
        assert sum(row["layer_bytes_above_base"]) == pytest.approx(row["above_base_bytes"], 0.02)
        assert row["agreement_with_the_model"] == 1.0
        assert 0.8 < row["accuracy"] <= 1.0
        assert len(row["cold_first_response_ms"]) == profile.cold_repeats
        assert all(ms >= 0 for ms in row["cold_first_response_ms"])
        assert 0 < row["warm_ms_p50"] <= row["warm_ms_p95"]
    # scikit-learn, scipy and pandas against numpy alone; a 2,400-row joblib'd k-NN
    assert tutorial["above_base_bytes"] > 2 * ours["above_base_bytes"]
    # each in a repository of its own (sam local's rapid image is per repository)
    assert tutorial["image"] == sam_local.built_image(work / "sam-tutorial")
    assert ours["image"] == sam_local.built_image(work / "sam-ours")
    assert tutorial["image"].rpartition(":")[2].startswith("tutorial-")  # the model's digest
    assert _repository(tutorial["image"]) != _repository(ours["image"])


def _repository(image: str) -> str:
    return image.rpartition(":")[0]


def test_everything_started_is_stopped(bench) -> None:
    _, work, docker = bench
    assert local_stack.read(work / "stack-docker") is None
    for name, row in zip(("tutorial", "ours"), docker["rows"], strict=True):
        assert sam_local.read_api(work / f"sam-{name}") is None
        repository = _repository(row["image"])
        running = subprocess.run(
            ["docker", "ps", "-q", "--filter", f"ancestor={repository}:rapid-x86_64"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert not running.split(), f"{repository}: containers left running"


def test_the_tutorial_image_is_its_own_dockerfile_on_our_base(bench) -> None:
    _, work, _ = bench
    project = work / "sam-tutorial"
    dockerfile = (project / "Dockerfile").read_text()
    assert f"\nFROM {base.base_tag()}\n" in dockerfile  # the base our Dockerfile names
    assert 'CMD ["app.lambda_handler"]' in dockerfile
    # the project's template, only the image's tag differs
    staged = (project / TEMPLATE_NAME).read_text().splitlines()
    original = (ROOT / TEMPLATE_NAME).read_text().splitlines()
    changed = [(a, b) for a, b in zip(original, staged, strict=True) if a != b]
    assert len(changed) == 1 and "DockerTag: tutorial-" in changed[0][1]


def test_table_puts_both_images_in_results_md(bench) -> None:
    _, _, docker = bench
    lines = docker_lines({"docker": docker})
    table = "\n".join(lines)
    assert "a labelled STAND-IN" in table or "AWS's image" in table
    assert table.count(docker_rows.PATH_LABEL) == 2
    skipped = docker_lines({"docker": {"skipped": "skipped: no engine"}})
    assert "skipped: no engine" in skipped[-1]


def test_skip_reason_follows_the_flag() -> None:
    assert docker_rows.skip_reason(None) is None  # an engine answers here
    assert docker_rows.skip_reason(True) is None
    assert "--no-docker" in (docker_rows.skip_reason(False) or "")
