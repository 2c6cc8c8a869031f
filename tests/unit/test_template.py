"""template_no_auth.yaml says what we mean: least-privilege S3 read, a timeout under API
Gateway's, throttling, a working URL (that it lints: tests/component/test_template_lint.py)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from offline_tools import load_cfn
from repo_paths import ROOT, TEMPLATE

from mnist_lambda.aws_limits import API_GATEWAY_TIMEOUT_S

PSEUDO_PARAMETERS = {"AWS::Partition", "AWS::Region", "AWS::URLSuffix", "AWS::AccountId"}


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_cfn(TEMPLATE)


@pytest.fixture(scope="module")
def function(template) -> dict[str, Any]:
    resource = template["Resources"]["PredictFunction"]
    assert resource["Type"] == "AWS::Serverless::Function"
    return resource


def test_parameters_and_defaults(template):
    params = template["Parameters"]
    assert template["Transform"] == "AWS::Serverless-2016-10-31"
    assert params["Stage"]["Default"] == "dev"
    assert "Default" not in params["DataBucketName"]  # required: no bucket is guessed
    assert params["DataKeyPrefix"]["Default"] == ""
    assert params["MemorySize"]["Type"] == "Number" and params["MemorySize"]["Default"] == 1769
    assert params["MaxObjectBytes"]["Default"] == 52428800  # the handler's 50 MiB default
    assert params["ThrottleRateLimit"]["Default"] <= 50
    assert params["ThrottleBurstLimit"]["Default"] <= 100
    assert params["SnapStart"]["Default"] == "None"
    assert params["SnapStart"]["AllowedValues"] == ["None", "PublishedVersions"]


def test_function_shape(function):
    props = function["Properties"]
    assert props["PackageType"] == "Image"
    assert props["Architectures"] == ["x86_64"]
    # API Gateway's integration limit: answer before it gives up
    assert props["Timeout"] < API_GATEWAY_TIMEOUT_S
    assert props["MemorySize"] == {"Ref": "MemorySize"}
    assert "Runtime" not in props and "Handler" not in props  # both come from the image
    # SnapStart is a parameter, off by default; the API invokes the published alias either way
    assert props["AutoPublishAlias"] == "live"
    assert props["SnapStart"] == {"ApplyOn": {"Ref": "SnapStart"}}
    metadata = function["Metadata"]
    assert metadata["DockerContext"] == "."
    assert (ROOT / metadata["DockerContext"] / metadata["Dockerfile"]).is_file()
    assert metadata["DockerTag"]


def test_environment_matches_what_the_handler_reads(function):
    variables = dict(function["Properties"]["Environment"]["Variables"])
    # read by boto3 itself, and only when S3EndpointUrl is set (local testing)
    assert variables.pop("AWS_ENDPOINT_URL_S3") == {
        "Fn::If": ["HasS3EndpointUrl", {"Ref": "S3EndpointUrl"}, {"Ref": "AWS::NoValue"}]
    }
    assert set(variables) == {"ALLOWED_BUCKETS", "MAX_OBJECT_BYTES", "LOG_LEVEL", "OUTPUT_PREFIX"}
    assert variables["ALLOWED_BUCKETS"] == {"Fn::Sub": "${DataBucketName}/${DataKeyPrefix}"}
    assert variables["MAX_OBJECT_BYTES"] == {"Ref": "MaxObjectBytes"}
    handler_source = (ROOT / "lambda_app" / "lambda_predict.py").read_text()
    for name in variables:
        assert f'"{name}"' in handler_source


def _statements(function) -> list[dict[str, Any]]:
    policies = function["Properties"]["Policies"]
    assert isinstance(policies, list)
    statements = []
    for policy in policies:
        assert isinstance(policy, dict) and "Statement" in policy, (
            f"only inline policy documents, no managed or SAM template policies: {policy!r}"
        )
        statements += policy["Statement"]
    return statements


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _text(value: Any) -> str:
    return value["Fn::Sub"] if isinstance(value, dict) and "Fn::Sub" in value else str(value)


def test_least_privilege_s3_read(function):
    statements = _statements(function)
    granted = {}
    for statement in statements:
        assert statement["Effect"] == "Allow"
        assert "NotAction" not in statement and "NotResource" not in statement
        for action in _as_list(statement["Action"]):
            assert "*" not in action, f"wildcard action {action}"
            for resource in _as_list(statement["Resource"]):
                text = _text(resource)
                assert text not in ("*", "arn:aws:s3:::*", "arn:${AWS::Partition}:s3:::*")
                granted.setdefault(action, set()).add(text)
    assert granted == {
        "s3:GetObject": {"arn:${AWS::Partition}:s3:::${DataBucketName}/${DataKeyPrefix}*"},
        "s3:ListBucket": {"arn:${AWS::Partition}:s3:::${DataBucketName}"},
        "s3:PutObject": {"arn:${AWS::Partition}:s3:::${DataBucketName}/${OutputKeyPrefix}*"},
    }


def test_no_broad_managed_policies():
    text = TEMPLATE.read_text()
    for banned in (
        "AmazonS3FullAccess",
        "AmazonS3ReadOnlyAccess",
        "S3CrudPolicy",
        "S3FullAccessPolicy",
        "AdministratorAccess",
        '"s3:*"',
        "s3:*",
    ):
        assert banned not in text


def test_api_throttling_and_event(template, function):
    api = template["Resources"]["MnistApi"]
    assert api["Type"] == "AWS::Serverless::Api"
    assert api["Properties"]["StageName"] == {"Ref": "Stage"}
    settings = api["Properties"]["MethodSettings"]
    assert any(
        s["ResourcePath"] == "/*"
        and s["HttpMethod"] == "*"
        and s["ThrottlingRateLimit"] == {"Ref": "ThrottleRateLimit"}
        and s["ThrottlingBurstLimit"] == {"Ref": "ThrottleBurstLimit"}
        for s in settings
    )
    events = function["Properties"]["Events"]
    assert len(events) == 1
    (event,) = events.values()
    assert event["Type"] == "Api"
    assert event["Properties"] == {
        "Path": "/predict",
        "Method": "post",
        "RestApiId": {"Ref": "MnistApi"},
    }


def test_outputs_reference_real_logical_ids(template):
    outputs = template["Outputs"]
    url = outputs["PredictUrl"]["Value"]["Fn::Sub"]
    assert url == (
        "https://${MnistApi}.execute-api.${AWS::Region}.${AWS::URLSuffix}/${Stage}/predict"
    )
    known = set(template["Resources"]) | set(template["Parameters"]) | PSEUDO_PARAMETERS
    for name in re.findall(r"\$\{([^}!]+)\}", url):
        assert name in known, f"${{{name}}} is not a resource, parameter or pseudo parameter"
    assert outputs["FunctionName"]["Value"] == {"Ref": "PredictFunction"}


def _translated(template: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The template as the SAM translator gives it to CloudFormation (offline: an image URI as
    `sam deploy` fills it in, a region)."""
    import copy

    from samtranslator.parser.parser import Parser
    from samtranslator.translator.translator import Translator

    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    template = copy.deepcopy(template)
    image = "123456789012.dkr.ecr.us-east-1.amazonaws.com/mnist-predict:1"
    template["Resources"]["PredictFunction"]["Properties"]["ImageUri"] = image
    return Translator(managed_policy_map={}, sam_parser=Parser()).translate(
        template, parameter_values={"DataBucketName": "my-data"}
    )


@pytest.mark.parametrize("endpoint", ["", "http://172.17.0.1:4566"])
def test_the_s3_endpoint_reaches_the_function_only_when_set(
    template, monkeypatch: pytest.MonkeyPatch, endpoint: str
) -> None:
    """S3EndpointUrl (local testing) sets AWS_ENDPOINT_URL_S3; empty, the default and what AWS
    gets, the SAM-translated function has no such variable once CloudFormation resolves it."""
    from mnist_lambda.template.reader import _Resolver

    assert template["Parameters"]["S3EndpointUrl"]["Default"] == ""
    translated = _translated(template, monkeypatch)
    function = translated["Resources"]["PredictFunction"]
    assert function["Type"] == "AWS::Lambda::Function"
    overrides = {"DataBucketName": "my-data", "S3EndpointUrl": endpoint}
    resolver = _Resolver(translated, overrides, "us-east-1")
    variables = resolver.resolve(function["Properties"]["Environment"])["Variables"]
    if endpoint:
        assert variables["AWS_ENDPOINT_URL_S3"] == endpoint
    else:
        assert "AWS_ENDPOINT_URL_S3" not in variables
    assert variables["ALLOWED_BUCKETS"] == "my-data/"
