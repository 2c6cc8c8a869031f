"""The SAM template reader: intrinsics, Globals, routes, function settings, and what it refuses."""

from __future__ import annotations

from pathlib import Path

import pytest
from repo_paths import TEMPLATE

from mnist_lambda import aws_limits
from mnist_lambda.template.reader import (
    Route,
    TemplateError,
    function_settings,
    load_stack_spec,
    load_template,
)

ONE_FUNCTION = """\
Parameters:
  Reserved: {{Type: Number, Default: 0}}
Conditions:
  HasReserved: !Not [!Equals [!Ref Reserved, 0]]
Resources:
  Api:
    Type: AWS::Serverless::Api
    Properties:
      StageName: dev
      MethodSettings: {settings}
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      Handler: app.handler
      ReservedConcurrentExecutions: !If [HasReserved, !Ref Reserved, !Ref AWS::NoValue]
{extra}      Events:
        P: {{Type: Api, Properties: {{RestApiId: !Ref Api, Path: /p, Method: post}}}}
"""


def write(tmp_path: Path, settings: str = "[]", extra: str = "") -> Path:
    """A one-function template; ``extra`` is more (indented) function properties."""
    path = tmp_path / "t.yaml"
    path.write_text(ONE_FUNCTION.format(settings=settings, extra=extra))
    return path


def test_template_resolution(tmp_path: Path) -> None:
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "Dockerfile").write_text(
        'FROM public.ecr.aws/lambda/python:3.11\nCMD ["app.main"]\n'
    )
    (tmp_path / "t.yaml").write_text("""\
Parameters:
  Env: {Type: String, Default: dev, AllowedValues: [dev, prod]}
  Mem: {Type: Number, Default: 512}
Conditions:
  IsProd: !Equals [!Ref Env, prod]
Globals:
  Function:
    Timeout: 30
    Architectures: [arm64]
    Environment:
      Variables: {FROM_GLOBALS: "yes", OVERRIDDEN: globals}
Resources:
  Api:
    Type: AWS::Serverless::Api
    Properties: {StageName: !Ref Env}
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      PackageType: Image
      MemorySize: !Ref Mem
      Environment:
        Variables:
          OVERRIDDEN: function
          NAME: !Sub "${AWS::StackName}-${Env}-${Api}"
          MODE: !If [IsProd, strict, lax]
          FLAG: true
          LITERAL: !Sub "${!NotAVar}"
          ARN: !GetAtt Api.Arn
          ATTR: !Sub "${Api.RootResourceId}"
      Events:
        P: {Type: Api, Properties: {RestApiId: !Ref Api, Path: /predict, Method: POST}}
        Any: {Type: Api, Properties: {RestApiId: !Ref Api, Path: "/{proxy+}", Method: any}}
    Metadata: {DockerContext: img, Dockerfile: Dockerfile}
  Other:
    Type: AWS::Serverless::Function
    Properties:
      Handler: other.handler
      Events:
        Get: {Type: Api, Properties: {Path: /other, Method: get}}
""")
    spec = load_stack_spec(tmp_path / "t.yaml")
    fn = spec.functions["Fn"]
    assert (fn.handler, fn.timeout, fn.memory_size, fn.package_type) == (
        "app.main",
        30,
        512,
        "Image",
    )
    assert fn.environment == {
        "FROM_GLOBALS": "yes", "OVERRIDDEN": "function", "NAME": "mnist-lambda-local-dev-Api",
        "MODE": "lax", "FLAG": "true", "LITERAL": "${NotAVar}", "ARN": "Api.Arn",
        "ATTR": "Api.RootResourceId",
    }  # fmt: skip
    other = spec.functions["Other"]
    assert (other.handler, other.timeout, other.memory_size) == (
        "other.handler",
        30,
        aws_limits.DEFAULT_MEMORY_MB,
    )
    assert fn.architecture == other.architecture == "arm64"  # from Globals
    routes = {(r.method, r.path, r.stage) for r in spec.routes}
    assert routes == {
        ("POST", "/predict", "dev"),
        ("ANY", "/{proxy+}", "dev"),
        ("GET", "/other", "Prod"),
    }  # the implicit API's stage is Prod
    assert spec.routes[-1].path == "/{proxy+}"  # static resources are matched first
    assert spec.routes[-1].match("/a/b") == {"proxy": "a/b"}
    assert spec.routes[0].match("/a/b") is None
    prod = load_stack_spec(tmp_path / "t.yaml", {"Env": "prod"})
    assert prod.functions["Fn"].environment["MODE"] == "strict"
    assert "prod" in prod.stages
    with pytest.raises(TemplateError, match="unknown template parameters"):
        load_stack_spec(tmp_path / "t.yaml", {"Nope": "1"})
    (tmp_path / "none.yaml").write_text("Resources: {B: {Type: AWS::S3::Bucket}}\n")
    with pytest.raises(TemplateError, match="no AWS::Serverless::Function has an Api event"):
        load_stack_spec(tmp_path / "none.yaml")


def test_route_path_parameters() -> None:
    route = Route("GET", "/items/{id}/parts/{rest+}", "F", "dev", "Api")
    assert route.match("/items/7/parts/a/b") == {"id": "7", "rest": "a/b"}
    assert route.match("/items/7/parts") is None and not route.is_static


def test_stage_throttle(tmp_path: Path) -> None:
    both = (
        '[{ResourcePath: "/*", HttpMethod: "*", ThrottlingRateLimit: 5, ThrottlingBurstLimit: 7}]'
    )
    assert load_stack_spec(write(tmp_path, both)).throttling["Api"].burst_limit == 7
    rate_only = '[{ResourcePath: "/*", HttpMethod: "*", ThrottlingRateLimit: 2.5}]'
    throttle = load_stack_spec(write(tmp_path, rate_only)).throttling["Api"]
    assert (throttle.rate_limit, throttle.burst_limit) == (2.5, aws_limits.API_GATEWAY_BURST_LIMIT)
    one_method = '[{ResourcePath: "/p", HttpMethod: POST, ThrottlingRateLimit: 1}]'
    assert load_stack_spec(write(tmp_path, one_method)).throttling == {}


def test_policies_resolve_partition_and_parameters(tmp_path: Path) -> None:
    policies = """\
      Policies:
        - Statement:
            - Effect: Allow
              Action: s3:GetObject
              Resource: !Sub "arn:${AWS::Partition}:s3:::b/${Reserved}*"
        - AWSLambdaBasicExecutionRole
"""
    (fn,) = load_stack_spec(write(tmp_path, extra=policies)).functions.values()
    (policy,) = fn.policies  # the managed policy name is not a document: not read
    assert policy["Statement"][0]["Resource"] == "arn:aws:s3:::b/0*"


def test_reserved_concurrency_if_novalue(tmp_path: Path) -> None:
    path = write(tmp_path)
    assert load_stack_spec(path).functions["Fn"].reserved_concurrency is None
    assert load_stack_spec(path, {"Reserved": "3"}).functions["Fn"].reserved_concurrency == 3


def test_ephemeral_storage(tmp_path: Path) -> None:
    fn = load_stack_spec(write(tmp_path)).functions["Fn"]
    assert fn.ephemeral_storage_mb == aws_limits.EPHEMERAL_STORAGE_MB == 512
    fn = load_stack_spec(write(tmp_path, extra="      EphemeralStorage: {Size: 2048}\n"))
    assert fn.functions["Fn"].ephemeral_storage_mb == 2048


@pytest.mark.parametrize(
    ("intrinsic", "message"),
    [
        ('!Join ["-", [a, b]]', "unsupported intrinsic function Fn::Join"),
        ("!Select [0, [a, b]]", "unsupported intrinsic function Fn::Select"),
        ("!FindInMap [M, a, b]", "unsupported intrinsic function Fn::FindInMap"),
        ("!ImportValue other", "unsupported intrinsic function Fn::ImportValue"),
        ('!Sub ["${X}", {X: a}]', "Fn::Sub with a variable map"),
        ("!Ref Nowhere", "Ref to unknown name 'Nowhere'"),
        ("!GetAtt Nowhere.Arn", "Fn::GetAtt of unknown resource"),
    ],
)
def test_unsupported_intrinsics_are_refused(tmp_path: Path, intrinsic: str, message: str) -> None:
    with pytest.raises(TemplateError, match=message):
        load_stack_spec(write(tmp_path, extra=f"      Description: {intrinsic}\n"))


def test_list_parameters_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path)
    path.write_text(path.read_text().replace("Type: Number", "Type: CommaDelimitedList"))
    with pytest.raises(TemplateError, match="CommaDelimitedList is not supported"):
        load_stack_spec(path)


def test_load_template_keeps_long_forms() -> None:
    props = load_template(TEMPLATE)["Resources"]["PredictFunction"]["Properties"]
    assert props["MemorySize"] == {"Ref": "MemorySize"}
    assert props["ReservedConcurrentExecutions"]["Fn::If"][2] == {"Ref": "AWS::NoValue"}


def test_function_settings_are_the_templates() -> None:
    template = load_template(TEMPLATE)
    params = template["Parameters"]
    settings = function_settings()
    assert (
        settings.function.timeout
        == template["Resources"]["PredictFunction"]["Properties"]["Timeout"]
    )
    assert settings.function.memory_size == params["MemorySize"]["Default"]
    assert settings.max_object_bytes == params["MaxObjectBytes"]["Default"]
    assert settings.throttle is not None
    assert settings.throttle.rate_limit == params["ThrottleRateLimit"]["Default"]
    assert settings.throttle.burst_limit == params["ThrottleBurstLimit"]["Default"]
    assert settings.function.timeout < aws_limits.API_GATEWAY_TIMEOUT_S
    assert function_settings(overrides={"MaxObjectBytes": "1000"}).max_object_bytes == 1000
    with pytest.raises(TemplateError, match="no Nope with a MAX_OBJECT_BYTES"):
        function_settings(function="Nope")
