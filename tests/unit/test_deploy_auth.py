"""``auth`` on the deploy step, offline: the SAM commands a ``target=aws`` deploy runs for each
auth (template and parameters), what it records, how the client then authenticates (the API
key's value read from API Gateway, never recorded), and the targets that refuse it."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from mnist_lambda.client import EndpointAuth
from mnist_lambda.deploy import aws_deploy, targets
from mnist_lambda.template import AUTH_TEMPLATE_NAME, TEMPLATE_NAME

OUTPUTS = {
    "PredictUrl": "https://abc123.execute-api.eu-west-1.amazonaws.com/dev/predict",
    "ApiKeyId": "k3y1d00001",
    "PredictMethodArn": "arn:aws:execute-api:eu-west-1:123456789012:abc123/dev/POST/predict",
}


@pytest.fixture
def commands(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The SAM commands deploy would run (not run), with the stack's outputs stubbed."""
    ran: list[list[str]] = []
    monkeypatch.setattr(aws_deploy, "run", lambda cmd: ran.append(list(cmd)))
    monkeypatch.setattr(aws_deploy, "stack_outputs", lambda name, region: dict(OUTPUTS))
    return ran


def _deploy(auth: str, tmp_path: Path) -> targets.Deployment:
    return targets.deploy(
        "aws",
        tmp_path,
        model_path=tmp_path / "model.npz",
        bucket="my-data",
        region="eu-west-1",
        auth=auth,
    )


@pytest.mark.parametrize(
    ("auth", "template", "override"),
    [
        ("none", TEMPLATE_NAME, None),
        ("iam", AUTH_TEMPLATE_NAME, "AuthType=AWS_IAM"),
        ("api_key", AUTH_TEMPLATE_NAME, "AuthType=API_KEY"),
    ],
)
def test_aws_deploy_uses_the_auths_template(
    commands: list[list[str]], tmp_path: Path, auth: str, template: str, override: str | None
) -> None:
    deployment = _deploy(auth, tmp_path)
    validate, build, deploy = commands
    assert validate[validate.index("-t") + 1] == template
    assert build[build.index("-t") + 1] == template
    overrides = deploy[deploy.index("--parameter-overrides") + 1 :]
    assert "DataBucketName=my-data" in overrides
    assert (override in overrides) if override else not any("AuthType" in o for o in overrides)
    assert (deployment.auth, deployment.url) == (auth, OUTPUTS["PredictUrl"])
    assert deployment.api_key_id == (OUTPUTS["ApiKeyId"] if auth == "api_key" else "")


def test_the_api_keys_value_is_read_from_api_gateway_not_recorded(
    commands: list[list[str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    deployment = _deploy("api_key", tmp_path)
    recorded = {f.name for f in dataclasses.fields(deployment)}
    assert "api_key_id" in recorded and not {"api_key", "api_key_value"} & recorded
    apigateway = boto3.client(
        "apigateway", region_name="eu-west-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    stub = Stubber(apigateway)
    stub.add_response(
        "get_api_key",
        {"id": OUTPUTS["ApiKeyId"], "value": "k3y-v4lue-from-api-gateway"},
        {"apiKey": OUTPUTS["ApiKeyId"], "includeValue": True},
    )
    real_client = boto3.client

    def client(service: str, **kwargs: Any) -> Any:
        return apigateway if service == "apigateway" else real_client(service, **kwargs)

    monkeypatch.setattr(boto3, "client", client)
    with stub:
        auth = targets.endpoint_auth(deployment, tmp_path)
    assert isinstance(auth, EndpointAuth) and auth.kind == "api_key"
    stub.assert_no_pending_responses()


def test_aws_iam_signs_with_the_credential_chain(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIACHAIN")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    deployment = targets.Deployment(
        "aws", OUTPUTS["PredictUrl"], 1769, "eu-west-1", "s", auth="iam"
    )
    auth = targets.endpoint_auth(deployment, tmp_path)
    assert auth is not None and (auth.kind, auth.region) == ("iam", "eu-west-1")
    public = targets.Deployment("aws", OUTPUTS["PredictUrl"], 1769, "eu-west-1", "s")
    assert targets.endpoint_auth(public, tmp_path) is None


def test_sam_local_and_unknown_auth_are_refused_with_what_to_do() -> None:
    with pytest.raises(ValueError, match=r"7750.*target='local'"):
        targets.check_auth("iam", "sam-local")
    with pytest.raises(ValueError, match="auth='oauth'"):
        targets.check_auth("oauth", "local")
    assert targets.check_auth("none", "sam-local") == "none"
    assert targets.check_auth("api_key", "aws") == "api_key"
