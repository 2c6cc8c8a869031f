"""A tiny echo function and its SAM template, written to disk for the local stack to serve."""

from __future__ import annotations

from pathlib import Path

# Reads commands from the JSON body ({"sleep": s}, {"raise": 1}, {"exit": 1}, {"raw": result},
# {"big": n}) or the query string (?binary=1 echoes the body back as a binary response);
# otherwise echoes the event and a few environment variables.
ECHO_HANDLER = """
import base64, json, os, time

print("echo: cold import", flush=True)
ENV_KEYS = ("GREETING", "ALLOWED_BUCKETS", "AWS_ENDPOINT_URL_S3", "MODEL_PATH", "AWS_REGION",
            "AWS_LAMBDA_FUNCTION_TIMEOUT", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "AWS_PROFILE",
            "LAMBDA_TASK_ROOT", "AWS_ACCESS_KEY_ID")


def handler(event, context):
    query = event.get("queryStringParameters") or {}
    if query.get("binary"):
        return {"statusCode": 200, "isBase64Encoded": True, "body": event["body"],
                "headers": {"Content-Type": "application/octet-stream"}}
    cmd = {}
    if event.get("body") and not event.get("isBase64Encoded"):
        try:
            cmd = json.loads(event["body"])
        except ValueError:
            pass
    if isinstance(cmd, dict):
        if cmd.get("sleep"):
            time.sleep(cmd["sleep"])
        if cmd.get("raise"):
            raise RuntimeError("boom")
        if cmd.get("exit"):
            os._exit(3)
        if "raw" in cmd:
            return cmd["raw"]
        if cmd.get("big"):
            return {"statusCode": 200, "body": "x" * cmd["big"]}
    env = {k: os.environ[k] for k in ENV_KEYS if k in os.environ}
    return {"statusCode": 200, "headers": {"X-Echo": "yes"},
            "body": json.dumps({"event": event, "env": env,
                                "remaining_ms": context.get_remaining_time_in_millis()})}
"""

TEMPLATE = """\
AWSTemplateFormatVersion: '2010-09-09'
Transform: AWS::Serverless-2016-10-31
Parameters:
  StageName: {{Type: String, Default: dev}}
  Greeting: {{Type: String, Default: hello}}
  FunctionTimeout: {{Type: Number, Default: {timeout}}}
Globals:
  Function:
    Timeout: !Ref FunctionTimeout
    Environment:
      Variables:
        GREETING: !Sub "${{Greeting}}-${{AWS::Region}}"
        ALLOWED_BUCKETS: from-template
Resources:
  EchoApi:
    Type: AWS::Serverless::Api
    Properties:
      StageName: !Ref StageName
  EchoFunction:
    Type: AWS::Serverless::Function
    Properties:
      Handler: echo.handler
      MemorySize: 256
      Events:
        Predict:
          Type: Api
          Properties: {{RestApiId: !Ref EchoApi, Path: /predict, Method: post}}
        Item:
          Type: Api
          Properties: {{RestApiId: !Ref EchoApi, Path: "/items/{{id}}", Method: get}}
"""


def write_echo_app(root: Path, timeout: int = 5) -> tuple[Path, Path]:
    """Write the echo function and its SAM template under ``root``; return (app_dir, template)."""
    app = root / "app"
    app.mkdir(parents=True, exist_ok=True)
    (app / "echo.py").write_text(ECHO_HANDLER)
    template = root / "template.yaml"
    template.write_text(TEMPLATE.format(timeout=timeout))
    return app, template


def write_throttled_echo_app(root: Path, rate: float, burst: int) -> tuple[Path, Path]:
    """The echo app, its API stage throttled (``MethodSettings``) to ``rate``/s and ``burst``."""
    app, template = write_echo_app(root)
    stage = "      StageName: !Ref StageName\n"
    throttle = (
        "      MethodSettings:\n"
        '        - {ResourcePath: "/*", HttpMethod: "*", '
        f"ThrottlingRateLimit: {rate}, ThrottlingBurstLimit: {burst}}}\n"
    )
    template.write_text(template.read_text().replace(stage, stage + throttle))
    return app, template
