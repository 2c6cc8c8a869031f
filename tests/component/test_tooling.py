"""Pre-commit and `make lint`: one list of local hooks, run offline from .venv, clean tree."""

from __future__ import annotations

import importlib.util
import json
import shlex
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from repo_paths import ROOT

CONFIG = ROOT / ".pre-commit-config.yaml"
# the checks ../shared/STYLE.md's "Tooling" names
STYLE_HOOKS = {
    "ruff-check",
    "ruff-format",
    "nbstripout",
    "cfn-lint",
    "hadolint",
    "check-yaml",
    "check-added-large-files",
    "detect-aws-credentials",
}


def load_script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


lint = load_script("lint")
hooks = load_script("hooks")


def config() -> dict[str, Any]:
    return yaml.safe_load(CONFIG.read_text(encoding="utf-8"))


def all_hooks() -> dict[str, dict[str, Any]]:
    return {h["id"]: h for repo in config()["repos"] for h in repo["hooks"]}


def test_every_hook_is_local_and_runs_from_the_venv() -> None:
    repos = config()["repos"]
    assert repos and all(repo["repo"] == "local" for repo in repos)
    assert "://" not in CONFIG.read_text(encoding="utf-8")  # nothing to fetch
    for hook_id, hook in all_hooks().items():
        assert hook["language"] == "system", hook_id
        executable = shlex.split(hook["entry"])[0]
        assert executable.startswith(".venv/bin/"), hook_id
        assert (ROOT / executable).exists(), f"{hook_id}: {executable} missing (make setup)"
    assert set(all_hooks()) >= STYLE_HOOKS


def test_make_lint_runs_the_config() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    recipe = makefile.split("\nlint:", 1)[1].split("\n\n", 1)[0]
    assert "scripts/lint.py" in recipe
    assert "ruff" not in recipe.split("\n", 1)[1]  # no second list of tools


def test_lint_refuses_hooks_that_need_the_network() -> None:
    remote = {"repos": [{"repo": "https://github.com/pre-commit/pre-commit-hooks", "hooks": []}]}
    with pytest.raises(SystemExit, match="repo: local"):
        lint.local_hooks(remote)
    python = {"repos": [{"repo": "local", "hooks": [{"id": "x", "language": "python"}]}]}
    with pytest.raises(SystemExit, match="needs a build"):
        lint.local_hooks(python)


def test_every_hook_selects_the_files_it_is_for() -> None:
    files = lint.repo_files()
    tags = {f: lint.file_tags(ROOT / f) for f in files}
    cfg = config()
    selected = {h["id"]: lint.select(h, files, tags, cfg) for h in lint.local_hooks(cfg)}
    assert all(selected.values()), [k for k, v in selected.items() if not v]
    assert "notebooks/02_train_model.ipynb" in selected["ruff-check"]
    assert "src/mnist_lambda/pipeline/preflight.py" in selected["ruff-format"]
    assert all(f.endswith(".ipynb") for f in selected["nbstripout"])
    assert selected["cfn-lint"] == ["template_no_auth.yaml"]
    # ours and the tutorial's (bench builds both)
    assert selected["hadolint"] == ["Dockerfile", "src/mnist_lambda/tutorial/app/Dockerfile"]
    assert {"template_no_auth.yaml", ".pre-commit-config.yaml"} <= set(selected["check-yaml"])
    assert "docs/images/confusion_matrices.png" not in selected["detect-aws-credentials"]


def test_nbstripout_hook_keeps_ids_and_the_parameters_tag(tmp_path: Path) -> None:
    nb = json.loads((ROOT / "notebooks/03_upload_to_s3.ipynb").read_text(encoding="utf-8"))
    code = next(c for c in nb["cells"] if c["cell_type"] == "code")
    code["outputs"] = [{"output_type": "stream", "name": "stdout", "text": ["hi\n"]}]
    code["execution_count"] = 7
    path = tmp_path / "dirty.ipynb"
    path.write_text(json.dumps(nb), encoding="utf-8")

    command = shlex.split(all_hooks()["nbstripout"]["entry"])
    command[0] = str(ROOT / command[0])
    assert subprocess.run([*command, str(path)], capture_output=True).returncode == 1
    strip = [part for part in command if part != "--verify"]
    subprocess.run([*strip, str(path)], check=True, capture_output=True)
    stripped = json.loads(path.read_text(encoding="utf-8"))
    assert [c.get("id") for c in stripped["cells"]] == [c.get("id") for c in nb["cells"]]
    assert any("parameters" in c["metadata"].get("tags", []) for c in stripped["cells"])
    assert all(c.get("outputs", []) == [] for c in stripped["cells"])


def test_check_yaml_allows_cloudformation_tags(tmp_path: Path) -> None:
    good = tmp_path / "t.yaml"
    good.write_text("Value: !Sub '${AWS::Region}'\nList: !GetAtt Fn.Arn\n")
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\n")
    assert hooks.check_yaml([str(good)]) == []
    (problem,) = hooks.check_yaml([str(bad)])
    assert problem.startswith(str(bad))


def test_check_added_large_files(tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    big.write_bytes(b"\0" * 600 * 1024)
    small = tmp_path / "small.txt"
    small.write_text("ok")
    (problem,) = hooks.check_added_large_files([str(big), str(small)], 500, committed=set())
    assert "600 KB" in problem
    assert hooks.check_added_large_files([str(big)], 500, committed={big.as_posix()}) == []
    assert "poetry.lock" in hooks.files_in_head(ROOT)  # committed: a change is no addition


def test_detect_aws_credentials(tmp_path: Path) -> None:
    key_id = "AKIA" + "Q" * 16  # built here so that this file holds no key id
    secret = "s3cr3t/" + "x" * 33
    leak = tmp_path / "leak.py"
    leak.write_text(f'KEY = "{key_id}"\naws_secret_access_key = "{secret}"\n')
    problems = hooks.detect_aws_credentials([str(leak)])
    assert [p.split(":")[1] for p in problems] == ["1", "2"]
    assert all(secret not in p and key_id not in p for p in problems)  # never echoed
    assert hooks.detect_aws_credentials([str(leak)], allow=[key_id, secret]) == []

    configured = "Zq9" + "w" * 37
    creds = tmp_path / "credentials"
    creds.write_text(f"[dev]\naws_access_key_id = x\naws_secret_access_key = {configured}\n")
    env = {"AWS_SHARED_CREDENTIALS_FILE": str(creds), "AWS_CONFIG_FILE": str(tmp_path / "none")}
    secrets = hooks.configured_secrets(env)
    assert secrets == {configured}
    note = tmp_path / "note.md"
    note.write_text(f"the key is {configured}\n")
    assert len(hooks.detect_aws_credentials([str(note)], secrets=secrets)) == 1


def test_make_lint_passes_on_the_tree() -> None:
    """Every hook over every tracked or new file, as `make lint` runs them."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "lint.py")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
