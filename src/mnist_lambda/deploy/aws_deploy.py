"""Deploy to and delete from AWS with the SAM CLI, non-interactively.

These run ``sam`` from this environment (installed with the project). They need an AWS account,
credentials from boto3's standard chain (``AWS_PROFILE``...) and, for ``sam build`` of an image
function, a Docker engine.
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping, Sequence
from typing import Any

from mnist_lambda.image.sam_local import sam_executable
from mnist_lambda.paths import project_root
from mnist_lambda.template import TEMPLATE_NAME


def validate_command(template: str = TEMPLATE_NAME, region: str = "us-east-1") -> list[str]:
    return [sam_executable(), "validate", "--lint", "-t", template, "--region", region]


def build_command(template: str = TEMPLATE_NAME) -> list[str]:
    return [sam_executable(), "build", "-t", template]


def deploy_command(
    stack_name: str, region: str, parameters: Mapping[str, Any], profile: str = ""
) -> list[str]:
    """``sam deploy`` with everything on the command line: no prompts, no samconfig needed."""
    overrides = [f"{key}={value}" for key, value in parameters.items() if value != ""]
    cmd = [
        sam_executable(),
        "deploy",
        "--stack-name",
        stack_name,
        "--region",
        region,
        "--resolve-s3",
        "--resolve-image-repos",
        "--capabilities",
        "CAPABILITY_IAM",
        "--no-confirm-changeset",
        "--no-fail-on-empty-changeset",
    ]
    if overrides:
        cmd += ["--parameter-overrides", *overrides]
    if profile:
        cmd += ["--profile", profile]
    return cmd


def delete_command(stack_name: str, region: str, profile: str = "") -> list[str]:
    cmd = [
        sam_executable(),
        "delete",
        "--stack-name",
        stack_name,
        "--region",
        region,
        "--no-prompts",
    ]
    return cmd + (["--profile", profile] if profile else [])


def run(cmd: Sequence[str]) -> None:
    """Run a SAM command in the project root, streaming its output; raise on failure."""
    print("$", " ".join(cmd), flush=True)
    proc = subprocess.run(list(cmd), cwd=project_root(), check=False)
    if proc.returncode != 0:
        raise RuntimeError(
            f"`{' '.join(cmd[:2])}` failed with exit code {proc.returncode}; see its output above"
        )


def stack_outputs(stack_name: str, region: str) -> dict[str, str]:
    """The CloudFormation stack's outputs, e.g. ``PredictUrl``."""
    import boto3

    stacks = boto3.client("cloudformation", region_name=region).describe_stacks(
        StackName=stack_name
    )["Stacks"]
    return {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}
