"""Security checks: the template scanned with checkov (accepted findings explained), no wildcard
permissions, nothing from a request ever unpickled, and the dependency audit (online only)."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from offline_tools import load_cfn, no_network_env
from repo_paths import AUTH_OPENAPI, LAMBDA_APP, OPENAPI, ROOT, TEMPLATE, TEMPLATES

from mnist_lambda.modeling import model_requirements

CHECKOV = ROOT / ".tools" / "iac-scan" / "bin" / "checkov"

ACCEPTED_TEMPLATE_FINDINGS = {
    "CKV_AWS_76",
    "CKV_AWS_120",
    "CKV_AWS_116",
    "CKV_AWS_117",
    "CKV_AWS_173",
}
"""Skipped in the template itself (Metadata: checkov: skip), each with its reason there."""

ACCEPTED_OPENAPI_FINDINGS = {
    "CKV_OPENAPI_4": "no global security: the endpoint is public by design (template_no_auth); "
    "abuse is bounded by stage throttling, the request validator and the read-only allow-list",
    "CKV_OPENAPI_5": "no per-operation security, for the same reason",
}


def checkov_env(tmp_path: Path) -> dict[str, str]:
    """No network: BC_SKIP_MAPPING stops the guideline download, proxies lead nowhere."""
    env = no_network_env(tmp_path, drop_prefixes=("AWS_", "BC_", "PRISMA_"))
    env.update(BC_SKIP_MAPPING="TRUE", CHECKOV_RUN_SCA_PACKAGE_SCAN_V2="false")
    return env


def run_checkov(tmp_path: Path, path: Path, framework: str) -> dict[str, Any]:
    if not CHECKOV.exists():
        pytest.skip(f"checkov is not installed at {CHECKOV} (make setup installs it)")
    proc = subprocess.run(
        [str(CHECKOV), "-f", str(path), "--framework", framework, "-o", "json", "--compact"],
        env=checkov_env(tmp_path),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.stdout.strip(), proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    return report[0] if isinstance(report, list) else report


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda p: p.name)
def test_checkov_template_has_no_unexplained_findings(tmp_path: Path, template: Path) -> None:
    report = run_checkov(tmp_path, template, "cloudformation")
    results = report["results"]
    failed = [(c["check_id"], c["check_name"], c["resource"]) for c in results["failed_checks"]]
    assert not failed, f"checkov findings to fix or explain: {failed}"
    skipped = {
        c["check_id"]: c["check_result"].get("suppress_comment", "")
        for c in results["skipped_checks"]
    }
    assert set(skipped) == ACCEPTED_TEMPLATE_FINDINGS
    for check_id, reason in skipped.items():
        assert len(reason) > 40, f"{check_id} is skipped without a real reason: {reason!r}"
    passed = {c["check_id"] for c in results["passed_checks"]}
    assert {"CKV_AWS_73", "CKV_AWS_115", "CKV_AWS_45"} <= passed  # X-Ray, concurrency, secrets


def test_checkov_openapi_has_no_unexplained_findings(tmp_path: Path) -> None:
    report = run_checkov(tmp_path, OPENAPI, "openapi")
    failed = {c["check_id"] for c in report["results"]["failed_checks"]}
    assert failed <= set(ACCEPTED_OPENAPI_FINDINGS), failed - set(ACCEPTED_OPENAPI_FINDINGS)


def test_checkov_openapi_with_auth_secures_the_operation(tmp_path: Path) -> None:
    """template.yaml's definition: the one operation declares its security (CKV_OPENAPI_5
    passes); the document-wide default (CKV_OPENAPI_4) is not set, because API Gateway applies
    the operation's, and there is no other operation."""
    report = run_checkov(tmp_path, AUTH_OPENAPI, "openapi")
    failed = {c["check_id"] for c in report["results"]["failed_checks"]}
    passed = {c["check_id"] for c in report["results"]["passed_checks"]}
    assert failed <= {"CKV_OPENAPI_4"}, failed
    assert "CKV_OPENAPI_5" in passed


def _statements() -> list[dict[str, Any]]:
    template = load_cfn(TEMPLATE)
    statements = []
    for resource in template["Resources"].values():
        for policy in (resource.get("Properties") or {}).get("Policies") or []:
            if isinstance(policy, dict):
                statements += policy.get("Statement", [])
    return statements


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def test_no_wildcard_permissions() -> None:
    statements = _statements()
    assert statements
    for statement in statements:
        assert statement["Effect"] == "Allow"
        assert "NotAction" not in statement and "NotResource" not in statement
        for action in _as_list(statement["Action"]):
            assert "*" not in action, f"wildcard action {action!r}"
        for resource in _as_list(statement["Resource"]):
            text = resource.get("Fn::Sub", "") if isinstance(resource, dict) else str(resource)
            assert text and text != "*", statement
            arn = text.split(":::", 1)[-1]
            assert not arn.startswith("*"), f"wildcard bucket in {text!r}"
            assert "${DataBucketName}" in arn or "Bucket" in arn, text


def test_the_api_validates_bodies_and_has_no_other_route() -> None:
    template = load_cfn(TEMPLATE)
    api = template["Resources"]["MnistApi"]["Properties"]
    include = api["DefinitionBody"]["Fn::Transform"]
    assert include["Name"] == "AWS::Include"
    assert (TEMPLATE.parent / include["Parameters"]["Location"]).resolve() == OPENAPI
    import yaml

    spec = yaml.safe_load(OPENAPI.read_text())
    assert list(spec["paths"]) == ["/predict"] and list(spec["paths"]["/predict"]) == ["post"]
    name = spec["paths"]["/predict"]["post"]["x-amazon-apigateway-request-validator"]
    assert spec["x-amazon-apigateway-request-validators"][name]["validateRequestBody"] is True


# --- nothing from a request is ever unpickled ------------------------------------------------

BANNED_MODULES = {"pickle", "cPickle", "_pickle", "joblib", "dill", "cloudpickle", "marshal",
                  "shelve", "sklearn"}  # fmt: skip
BANNED_CALLS = {"eval", "exec", "__import__", "register_custom_ops_library"}
"""... and onnxruntime's door to native code a model file could ask for (custom operators)."""


def _python_files() -> list[Path]:
    files = sorted(LAMBDA_APP.rglob("*.py"))
    assert LAMBDA_APP / "lambda_predict.py" in files
    return files


@pytest.mark.parametrize("path", _python_files(), ids=lambda p: str(p.relative_to(LAMBDA_APP)))
def test_serving_code_cannot_unpickle(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                assert alias.name.split(".")[0] not in BANNED_MODULES, (path, alias.name)
        elif isinstance(node, ast.ImportFrom):
            assert (node.module or "").split(".")[0] not in BANNED_MODULES, (path, node.module)
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            assert name not in BANNED_CALLS, f"{path}:{node.lineno}: {name}()"
            for keyword in node.keywords:
                if keyword.arg == "allow_pickle":
                    assert isinstance(keyword.value, ast.Constant), f"{path}:{node.lineno}"
                    assert keyword.value.value is False, f"{path}:{node.lineno}: allow_pickle"
            if name == "load" and isinstance(func, ast.Attribute):
                owner = getattr(func.value, "id", "")
                if owner in ("np", "numpy"):
                    assert any(k.arg == "allow_pickle" for k in node.keywords), (
                        f"{path}:{node.lineno}: np.load without allow_pickle=False"
                    )
                assert owner not in ("yaml", "pickle", "joblib"), f"{path}:{node.lineno}"
            if name == "InferenceSession":  # an ONNX model runs on the CPU provider only,
                providers = [k for k in node.keywords if k.arg == "providers"]  # from bytes
                assert providers and ast.literal_eval(providers[0].value) == [
                    "CPUExecutionProvider"
                ], f"{path}:{node.lineno}: InferenceSession without CPU-only providers"
                assert _calls_in_same_function(tree, node, "operator_domains"), (
                    f"{path}:{node.lineno}: InferenceSession before the operator-domain check"
                )
    text = path.read_text(encoding="utf-8")
    assert "allow_pickle=True" not in text.replace(" ", "")


def _calls_in_same_function(tree: ast.AST, call: ast.Call, name: str) -> bool:
    """Whether the function that makes ``call`` also calls ``name`` before it."""
    for func in ast.walk(tree):
        if isinstance(func, ast.FunctionDef) and call in ast.walk(func):
            return any(
                isinstance(c, ast.Call)
                and getattr(c.func, "id", getattr(c.func, "attr", "")) == name
                and c.lineno < call.lineno
                for c in ast.walk(func)
            )
    return False


def test_the_image_ships_no_pickle_capable_libraries() -> None:
    texts = [
        (LAMBDA_APP / "requirements.txt").read_text(),
        model_requirements.onnx_requirements(),  # what an ONNX model adds
    ]
    names = {
        line.split("==")[0].strip().lower()
        for text in texts
        for line in text.splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert "onnxruntime" in names
    assert not names & {"joblib", "scikit-learn", "dill", "cloudpickle", "pandas", "skl2onnx"}


# --- dependency audit ----------------------------------------------------------------------


@pytest.mark.skipif(
    os.environ.get("AUDIT_ONLINE") != "1",
    reason="pip-audit needs the network (PyPI/OSV vulnerability data); set AUDIT_ONLINE=1 to run",
)
def test_pip_audit_of_the_lambda_requirements() -> None:
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "pip-audit"), "-r",
         str(LAMBDA_APP / "requirements.txt"), "--progress-spinner", "off", "--desc", "on"],
        capture_output=True,
        text=True,
        timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
