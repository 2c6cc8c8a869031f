"""The package's layers, as docs/architecture.md draws them, hold in the code: no module imports
from a layer above its own, and no import cycle runs between modules.

Every import counts, at module top or inside a function (a lazy import is still a dependency).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from repo_paths import ROOT

PACKAGE = ROOT / "src" / "mnist_lambda"
LAYERS: dict[str, int] = {
    # 0: foundation, imports nothing of the project
    "paths": 0,
    "storage": 0,
    "provenance": 0,
    "aws_limits": 0,
    "pricing": 0,
    "progress_bar": 0,
    # 1: what the template says, the endpoint's client, the models
    "template": 1,
    "client": 1,
    "modeling": 1,
    # 2: running the function (the Docker-free stack, the image with Docker)
    "local_stack": 2,
    "image": 2,
    # 3: where the function and its data live
    "deploy": 3,
    # 4: what the user runs: the notebook pipeline, batches, tuning, the benchmark
    "tutorial": 4,
    "pipeline": 4,
    "batch": 4,
    "tuning": 4,
    "bench": 4,
    # 5: the command line
    "commands": 5,
    "cli": 5,
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """The project modules ``path`` imports (``from a import b`` counts ``a.b`` when that is a
    module, else ``a``)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert not node.level, f"{path}: a relative import; name the module in full"
            base = node.module or ""
            found |= {
                f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names
            }
    return {name for name in found if name in MODULES}


MODULES = {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _layer(module: str) -> int:
    top = module.split(".")[1] if "." in module else ""
    if top not in LAYERS:
        raise AssertionError(f"{module}: its top-level name {top!r} has no layer in LAYERS")
    return LAYERS[top]


def test_every_module_has_a_layer() -> None:
    for module in MODULES:
        if module != "mnist_lambda":
            _layer(module)


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m != "mnist_lambda"))
def test_no_module_imports_from_a_higher_layer(module: str) -> None:
    upward = [
        f"{target} (layer {_layer(target)})"
        for target in sorted(_imports(MODULES[module]))
        if target != "mnist_lambda" and _layer(target) > _layer(module)
    ]
    assert not upward, f"{module} (layer {_layer(module)}) imports upward: {', '.join(upward)}"


def test_no_import_cycle() -> None:
    graph = {m: _imports(p) - {m, "mnist_lambda"} for m, p in MODULES.items()}
    # a package's __init__ is imported with any of its modules: that edge is no cycle of ours
    for module, targets in graph.items():
        graph[module] = {t for t in targets if not module.startswith(t + ".")}
    visiting: list[str] = []
    done: set[str] = set()

    def visit(module: str) -> None:
        if module in done:
            return
        if module in visiting:
            cycle = [*visiting[visiting.index(module) :], module]
            raise AssertionError("import cycle: " + " -> ".join(cycle))
        visiting.append(module)
        for target in sorted(graph.get(module, ())):
            visit(target)
        visiting.pop()
        done.add(module)

    for module in sorted(graph):
        visit(module)
