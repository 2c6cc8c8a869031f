"""The authenticated deployment, generated from the tutorial's: ``template.yaml`` and
``openapi/predict_auth.yaml`` are ``template_no_auth.yaml`` and ``openapi/predict.yaml`` with the
auth added, so every other fact stays in one place (a test checks the files are up to date).

The method's auth is the ``AuthType`` parameter: ``AWS_IAM`` (SigV4; the caller needs
``execute-api:Invoke`` on the method's ARN) or ``API_KEY`` (an ``x-api-key`` of the stack's API
key, under a usage plan with a throttle and a daily quota; the outputs give the key's id, never
its value). Regenerate with ``python -m mnist_lambda.template.auth``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from mnist_lambda.paths import project_root
from mnist_lambda.storage import atomic_write_text
from mnist_lambda.template import AUTH_TEMPLATE_NAME, TEMPLATE_NAME

OPENAPI_SOURCE = "openapi/predict.yaml"
OPENAPI_AUTH = "openapi/predict_auth.yaml"
_HEADER = (
    "# GENERATED from {source} by `python -m mnist_lambda.template.auth`: edit the source and\n"
    "# regenerate (tests/unit/test_auth_template.py fails when this file is out of date).\n"
)


class _Edit:
    """Text edits that each must apply exactly once (a moved anchor is an error, not a skip)."""

    def __init__(self, text: str, source: str) -> None:
        self.text, self.source = text, source

    def _anchor(self, anchor: str) -> int:
        if self.text.count(anchor) != 1:
            raise ValueError(f"{self.source}: expected {anchor!r} exactly once")
        return self.text.index(anchor)

    def after(self, anchor: str, insert: str) -> _Edit:
        end = self._anchor(anchor) + len(anchor)
        self.text = self.text[:end] + insert + self.text[end:]
        return self

    def before(self, anchor: str, insert: str) -> _Edit:
        start = self._anchor(anchor)
        self.text = self.text[:start] + insert + self.text[start:]
        return self

    def replace(self, old: str, new: str) -> _Edit:
        self._anchor(old)
        self.text = self.text.replace(old, new)
        return self


_DESCRIPTION = """Description: >-
  MNIST digit classifier with an authenticated API: POST /predict {"bucket", "key"} accepts
  only SigV4-signed requests of a principal allowed execute-api:Invoke (AuthType AWS_IAM), or
  requests with the stack's API key under a usage plan (AuthType API_KEY). Otherwise the same
  deployment as template_no_auth.yaml, from which this file is generated.
"""

_PARAMETERS = """  AuthType:
    Type: String
    Default: AWS_IAM
    AllowedValues: [AWS_IAM, API_KEY]
    Description: >-
      How POST /predict authenticates callers: AWS_IAM (SigV4; grant execute-api:Invoke on the
      PredictMethodArn output) or API_KEY (x-api-key header; the ApiKeyId output names the key).
  UsagePlanRateLimit:
    Type: Number
    Default: 5
    MinValue: 1
    Description: AuthType API_KEY only - steady requests per second one API key may make.
  UsagePlanBurstLimit:
    Type: Number
    Default: 10
    MinValue: 1
    Description: AuthType API_KEY only - burst of requests one API key may make above the rate.
  UsagePlanQuotaPerDay:
    Type: Number
    Default: 10000
    MinValue: 1
    Description: AuthType API_KEY only - requests one API key may make per UTC day.
"""

_CONDITIONS = """  UseIamAuth: !Equals [!Ref AuthType, AWS_IAM]
  UseApiKeyAuth: !Equals [!Ref AuthType, API_KEY]
"""

_RESOURCES = """  # AuthType API_KEY: one key, enabled, bound to the API's stage by a usage plan
  # that throttles it and caps its daily requests. API Gateway generates its value, which is
  # never in the template nor the outputs:
  # `aws apigateway get-api-key --api-key <ApiKeyId> --include-value` reads it.
  ApiKey:
    Type: AWS::ApiGateway::ApiKey
    Condition: UseApiKeyAuth
    Properties:
      Description: !Sub "Callers of ${AWS::StackName} POST /predict"
      Enabled: true

  UsagePlan:
    Type: AWS::ApiGateway::UsagePlan
    Condition: UseApiKeyAuth
    Properties:
      Description: !Sub "Throttle and daily quota of each ${AWS::StackName} API key"
      ApiStages:
        - ApiId: !Ref MnistApi
          Stage: !Ref MnistApi.Stage
      Throttle:
        RateLimit: !Ref UsagePlanRateLimit
        BurstLimit: !Ref UsagePlanBurstLimit
      Quota:
        Limit: !Ref UsagePlanQuotaPerDay
        Period: DAY

  UsagePlanKey:
    Type: AWS::ApiGateway::UsagePlanKey
    Condition: UseApiKeyAuth
    Properties:
      KeyId: !Ref ApiKey
      KeyType: API_KEY
      UsagePlanId: !Ref UsagePlan

"""

_OUTPUTS = """  PredictMethodArn:
    Condition: UseIamAuth
    Description: >-
      Grant execute-api:Invoke on this ARN to the principals that may call POST /predict.
    Value: !Sub "@METHOD_ARN@"
  ApiKeyId:
    Condition: UseApiKeyAuth
    Description: >-
      The API key's id (its value: aws apigateway get-api-key --api-key <id> --include-value).
    Value: !Ref ApiKey
""".replace(
    "@METHOD_ARN@",
    "arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:"
    "${MnistApi}/${Stage}/POST/predict",
)


def render_template(no_auth: str) -> str:
    """``template.yaml``'s text from ``template_no_auth.yaml``'s."""
    description_end = no_auth.index("\nParameters:")
    description_start = no_auth.index("Description: >-")
    text = no_auth[:description_start] + _DESCRIPTION + no_auth[description_end:]
    edit = _Edit(text, TEMPLATE_NAME)
    edit.after("\nParameters:\n", _PARAMETERS)
    edit.after("\nConditions:\n", _CONDITIONS)
    edit.replace(f"Location: {OPENAPI_SOURCE}", f"Location: {OPENAPI_AUTH}")
    edit.before("  PredictFunction:\n    Type: AWS::Serverless::Function", _RESOURCES)
    edit.after("\nOutputs:\n", _OUTPUTS)
    edit.replace(
        '    Description: POST {"bucket", "key"} here to get the predicted digits.',
        '    Description: POST {"bucket", "key"} here, signed or with the API key (AuthType).',
    )
    header = _HEADER.format(source=TEMPLATE_NAME)
    return header + edit.text


_SECURITY = """      # AuthType (template.yaml): SigV4 (execute-api:Invoke) or the stack's API key
      security:
        Fn::If:
          - UseIamAuth
          - [{sigv4: []}]
          - [{api_key: []}]
"""

_SCHEMES = """  securitySchemes:
    sigv4:
      type: apiKey
      name: Authorization
      in: header
      x-amazon-apigateway-authtype: awsSigv4
    api_key:
      type: apiKey
      name: x-api-key
      in: header
"""


def render_openapi(source: str) -> str:
    """``openapi/predict_auth.yaml``'s text from ``openapi/predict.yaml``'s."""
    edit = _Edit(source, OPENAPI_SOURCE)
    edit.after("      x-amazon-apigateway-request-validator: body-only\n", _SECURITY)
    edit.after("\ncomponents:\n", _SCHEMES)
    edit.before(
        "x-amazon-apigateway-request-validators:", "x-amazon-apigateway-api-key-source: HEADER\n"
    )
    return _HEADER.format(source=OPENAPI_SOURCE) + edit.text


def generated(root: Path | None = None) -> dict[Path, str]:
    """Each generated file's path and the text it must have."""
    root = root or project_root()
    return {
        root / AUTH_TEMPLATE_NAME: render_template((root / TEMPLATE_NAME).read_text("utf-8")),
        root / OPENAPI_AUTH: render_openapi((root / OPENAPI_SOURCE).read_text("utf-8")),
    }


def stale(root: Path | None = None) -> list[Path]:
    """The generated files that differ from what their sources give."""
    return [
        path
        for path, text in generated(root).items()
        if not path.is_file() or path.read_text("utf-8") != text
    ]


def main(argv: list[str] | None = None) -> int:
    """Write the generated files (``--check``: only say which are out of date)."""
    check = "--check" in (argv if argv is not None else sys.argv[1:])
    if check:
        out_of_date = stale()
        for path in out_of_date:
            print(f"out of date: {path} (run python -m mnist_lambda.template.auth)")
        return 1 if out_of_date else 0
    for path, text in generated().items():
        atomic_write_text(path, text)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
