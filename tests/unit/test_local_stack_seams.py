"""The local stack's seams, without starting it: the client imports no server module (and no
server module the client), the deploy request and ``serve``'s options are typed values."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

from mnist_lambda import cli
from mnist_lambda.commands.serve import config_from
from mnist_lambda.local_stack.protocol import DEPLOY_REQUEST_NAME, DeployRequest
from mnist_lambda.local_stack.supervisor import StackConfig

PACKAGE = Path(cli.__file__).parent / "local_stack"
CLIENT = "mnist_lambda.local_stack"
SHARED = {"mnist_lambda.local_stack.protocol"}


def _imports(path: Path) -> set[str]:
    """Modules ``path`` imports (``from a import b``: ``a.b`` when ``b`` is a module)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                module = f"{node.module}.{alias.name}"
                submodule = PACKAGE / Path(*module.split(".")[2:])
                is_module = submodule.with_suffix(".py").exists() or submodule.is_dir()
                found.add(module if is_module else node.module)
    return found


def test_no_server_module_imports_the_client():
    for path in PACKAGE.rglob("*.py"):
        if path.parent == PACKAGE and path.name == "__init__.py":
            continue
        assert CLIENT not in _imports(path), path
        assert f"{CLIENT}.__init__" not in _imports(path), path


def test_the_client_imports_no_server_module():
    client = {m for m in _imports(PACKAGE / "__init__.py") if m.startswith(f"{CLIENT}.")}
    assert client <= SHARED
    code = "import json, sys, mnist_lambda.local_stack; print(json.dumps(sorted(sys.modules)))"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = json.loads(run.stdout)
    assert {m for m in loaded if m.startswith(f"{CLIENT}.")} <= SHARED


def test_a_deploy_request_round_trips_through_its_file(tmp_path: Path):
    request = DeployRequest(Path("/m/model.onnx"), 2, {"MemorySize": "512"})
    assert DeployRequest.from_json(json.loads(json.dumps(request.to_json()))) == request
    request.write(tmp_path)
    assert DeployRequest.take(tmp_path) == request
    assert not (tmp_path / DEPLOY_REQUEST_NAME).exists()
    assert DeployRequest.take(tmp_path) == DeployRequest()  # none left: nothing changes
    assert DeployRequest().changes_nothing and not request.changes_nothing


def test_a_deploy_request_changes_only_what_it_names():
    config = StackConfig(model_path=Path("/a.npz"), instances=3, parameters={"A": "1"})
    assert config.deployed(DeployRequest()) == config
    changed = config.deployed(DeployRequest(instances=0, parameters={"B": "2"}))
    assert (changed.model_path, changed.instances) == (Path("/a.npz"), 0)
    assert changed.parameters == {"A": "1", "B": "2"}


def test_serve_options_become_a_stack_config(tmp_path: Path):
    args = cli.build_parser(["serve"]).parse_args(
        ["serve", "-P", "MemorySize=885", "-P", "SnapStart=None", "-e", "LOG_LEVEL=DEBUG",
         "--model-path", "model.npz", "--instances", "0", "-q"]
    )  # fmt: skip
    config = config_from(args)
    assert config.parameters == {"MemorySize": "885", "SnapStart": "None"}
    assert config.env == {"LOG_LEVEL": "DEBUG"} and config.instances == 0 and args.quiet
    assert config.model_path == Path("model.npz").resolve() and config.model_path.is_absolute()
    default = StackConfig()
    assert (config.template, config.integration_timeout) == (
        default.template,
        default.integration_timeout,
    )
