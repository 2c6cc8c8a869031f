"""template_no_auth.yaml and template.yaml (with auth) through the real tools, offline: cfn-lint
and `sam validate --lint` (each a process; the templates' own assertions are tests/unit)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from offline_tools import no_network_env
from repo_paths import ROOT, TEMPLATES

BIN = Path(sys.executable).parent


def offline_env(tmp_path: Path) -> dict[str, str]:
    """Dummy AWS settings, no telemetry, and proxies that lead nowhere: nothing leaves."""
    env = no_network_env(tmp_path)
    env.update(
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_CONFIG_FILE=str(tmp_path / "config"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "credentials"),
        AWS_EC2_METADATA_DISABLED="true",
        SAM_CLI_TELEMETRY="0",
    )
    return env


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda p: p.name)
def test_cfn_lint_passes(tmp_path, template):
    result = subprocess.run(
        [str(BIN / "cfn-lint"), str(template)],
        env=offline_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda p: p.name)
def test_sam_validate_lint_passes_offline(tmp_path, template):
    result = subprocess.run(
        [str(BIN / "sam"), "validate", "--lint", "-t", str(template)],
        env=offline_env(tmp_path),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "is a valid SAM Template" in result.stdout + result.stderr
