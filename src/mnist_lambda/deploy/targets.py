"""Where a run's S3 and endpoint live, ``local``, ``sam-local`` or ``aws``: decided here only.

- ``local``: one local-stack process per run folder (found again through its
  ``local_stack.json``) provides S3 and the function behind the API front. The upload step starts
  it with no function environment, for its S3 only (:func:`s3_client` with ``start=True``, no
  deploy settings needed); the deploy step (:func:`deploy`) then deploys the function on it with
  the trained model and the requested instances (a redeploy: the next request is a cold start).
- ``sam-local``: the image itself, built and served by the real tools. The upload step starts the
  run's local stack for its S3 only, listening at the Docker bridge's gateway so that a
  container reaches it; the deploy step stages the SAM project in ``<run>/sam/`` (template,
  OpenAPI, build context with the trained model), runs ``sam build`` and starts ``sam local
  start-api --warm-containers EAGER`` (detached, recorded there) with the function principal's
  credentials and the S3 endpoint in ``--env-vars``. Needs a Docker engine.
- ``aws``: S3 through boto3's own credential chain (``AWS_PROFILE``, environment, SSO...); deploy
  runs ``sam validate``, ``sam build`` and ``sam deploy`` and reads the URL from the stack outputs.

``auth`` (``none``, the tutorial's ``template_no_auth.yaml``; ``iam`` or ``api_key``,
``template.yaml``) picks the template and so the API's auth; :func:`endpoint_auth` gives the
client what a deployment needs: locally the stack's allowed caller or API key (from its state
file), on AWS the standard credential chain or the stack's API key read from API Gateway.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mnist_lambda import local_stack
from mnist_lambda.client import EndpointAuth
from mnist_lambda.deploy import aws_deploy, s3_data
from mnist_lambda.image import docker_engine, sam_local
from mnist_lambda.local_stack import protocol
from mnist_lambda.template import (
    AUTH_TYPES,
    BUCKET_PARAMETER,
    MEMORY_PARAMETER,
    auth_parameters,
    template_path,
)

TARGETS = ("local", "sam-local", "aws")
LOCAL_TARGETS = ("local", "sam-local")  # S3 is the run's local stack
SAM_PROJECT_DIR = "sam"  # <run>/sam: the SAM project that sam-local builds and serves
DEFAULT_BUCKET = protocol.DEFAULT_BUCKET  # the local stack's data bucket
LOCAL_INSTANCES = 2  # function environments deploy starts (04_deploy's default)


@dataclass(frozen=True)
class Deployment:
    """A deployed endpoint, as the deploy step hands it to the evaluate step."""

    target: str
    url: str
    memory_mb: int
    region: str
    stack_name: str
    instances: int = 0
    auth: str = "none"  # a key of template.AUTH_TYPES: how a caller authenticates
    api_key_id: str = ""  # auth="api_key" on AWS: the key's id (its value is API Gateway's)


def check_target(target: str) -> str:
    """``target`` if it is known, else a ValueError that names the choices."""
    if target not in TARGETS:
        raise ValueError(f"target={target!r}: use {' or '.join(map(repr, TARGETS))}")
    return target


def check_auth(auth: str, target: str) -> str:
    """``auth`` if known and ``target`` enforces it, else a ValueError that says what to do."""
    if auth not in AUTH_TYPES:
        raise ValueError(f"auth={auth!r}: use {' or '.join(map(repr, AUTH_TYPES))}")
    if auth != "none" and target == "sam-local":
        raise ValueError(
            f"auth={auth!r} with target='sam-local': `sam local start-api` does not enforce "
            "AWS_IAM or API keys (aws-sam-cli#7750), so the test would prove nothing; use "
            "target='local', whose API front enforces both as API Gateway does"
        )
    return auth


def s3_client(
    target: str,
    run_dir: Path,
    region: str,
    bucket: str,
    start: bool = False,
    auth: str = "none",
) -> Any:
    """A boto3 S3 client for ``target``; locally, the stack's S3 (started if ``start``, with
    ``auth``'s template, so that the deploy step only redeploys)."""
    if check_target(target) == "aws":
        import boto3

        return boto3.Session(region_name=region).client("s3")
    info = local_stack.read(run_dir)
    if info is None and start:
        # S3 only (deploy deploys); for a container, at the Docker bridge's gateway
        host = docker_engine.bridge_gateway() if target == "sam-local" else ""
        info = local_stack.start(
            run_dir,
            bucket=bucket,
            instances=0,
            s3_host=host,
            **local_stack.auth_start_kwargs(check_auth(auth, target)),
        )
        print(f"local stack started in {run_dir}: S3 at {info.s3_url}", flush=True)
    if info is None:
        raise RuntimeError(f"no local stack runs in {run_dir}: run 03_upload_to_s3 first")
    if info.bucket != bucket:
        raise RuntimeError(
            f"the local stack in {run_dir} serves bucket {info.bucket!r}, not {bucket!r}: use "
            "that bucket, or stop the stack (04_deploy with teardown=True) first"
        )
    return local_stack.s3_client(info)


def deploy(
    target: str,
    run_dir: Path,
    *,
    model_path: Path,
    bucket: str,
    region: str,
    instances: int = LOCAL_INSTANCES,
    stack_name: str = "mnist-lambda",
    stage: str = "dev",
    memory_size: int = 0,
    auth: str = "none",
) -> Deployment:
    """Start or update the function and API on ``target``; return where ``POST /predict`` is.
    ``memory_size`` (MB; 0 keeps the template's default) reaches the function on every target;
    ``auth`` picks the template (:func:`check_auth`)."""
    check_auth(auth, check_target(target))
    parameters = {"Stage": stage, BUCKET_PARAMETER: bucket, MEMORY_PARAMETER: memory_size or ""}
    if target == "local":
        info = _deploy_local(run_dir, Path(model_path), bucket, instances, memory_size, auth)
        return Deployment(
            "local", info.predict_url, info.memory_mb, region, "local", instances, auth
        )
    if target == "sam-local":
        return _deploy_sam_local(run_dir, Path(model_path), parameters)
    template = template_path(auth).name
    parameters |= auth_parameters(auth)
    aws_deploy.run(aws_deploy.validate_command(template, region=region))
    aws_deploy.run(aws_deploy.build_command(template))
    aws_deploy.run(aws_deploy.deploy_command(stack_name, region, parameters))  # the build's
    outputs = aws_deploy.stack_outputs(stack_name, region)
    memory_mb = memory_size or local_stack.template_memory_mb()
    api_key_id = outputs.get("ApiKeyId", "") if auth == "api_key" else ""
    return Deployment(
        "aws", outputs["PredictUrl"], memory_mb, region, stack_name, 0, auth, api_key_id
    )


def endpoint_auth(deployment: Deployment, run_dir: Path) -> EndpointAuth | None:
    """How the client authenticates to ``deployment`` (None: a public endpoint)."""
    if deployment.auth == "none":
        return None
    if deployment.target in LOCAL_TARGETS:
        if (info := local_stack.read(run_dir)) is None:
            raise RuntimeError(f"no local stack runs in {run_dir}: run 04_deploy again")
        return local_stack.endpoint_auth(info)
    if deployment.auth == "iam":
        return EndpointAuth.iam(deployment.region)
    import boto3

    apigateway = boto3.client("apigateway", region_name=deployment.region)
    key = apigateway.get_api_key(apiKey=deployment.api_key_id, includeValue=True)
    return EndpointAuth.key(key["value"])


def _deploy_local(
    run_dir: Path,
    model_path: Path,
    bucket: str,
    instances: int,
    memory_size: int = 0,
    auth: str = "none",
) -> local_stack.StackInfo:
    """Fresh environments serving ``model_path`` on the run's stack (its S3 objects kept),
    behind ``auth``'s template: a stack started with another one is restarted with this one
    (its S3 objects are lost then: upload again)."""
    model_path = model_path.resolve()
    memory = {MEMORY_PARAMETER: str(memory_size)} if memory_size else {}
    template = template_path(auth)
    info = local_stack.read(run_dir)
    serves = Path(str(info.raw.get("template"))) if info is not None else template
    if serves != template:
        raise RuntimeError(
            f"the local stack in {run_dir} serves {serves.name}, not "
            f"{template.name} (auth={auth!r}): stop it (04_deploy with teardown=True) and "
            "run 03_upload_to_s3 again with this auth"
        )
    if info is None:
        print(f"starting the local stack in {run_dir} (S3 is empty: upload first)", flush=True)
        parameters = {**memory, **auth_parameters(auth)}
        return local_stack.start(
            run_dir,
            bucket=bucket,
            instances=instances,
            model_path=model_path,
            template=template,
            extra_args=[arg for k, v in parameters.items() for arg in ("-P", f"{k}={v}")],
        )
    return local_stack.redeploy(
        run_dir, model_path=str(model_path), instances=instances, parameters=memory
    )


def _deploy_sam_local(run_dir: Path, model_path: Path, parameters: dict[str, Any]) -> Deployment:
    """``sam build`` the run's model into the image, then ``sam local start-api`` on it."""
    info = local_stack.read(run_dir)
    if info is None:
        raise RuntimeError(
            f"no local stack runs in {run_dir}: run 03_upload_to_s3 with target='sam-local' first"
        )
    gateway = docker_engine.bridge_gateway()
    if f"//{gateway}:" not in info.s3_url:
        raise RuntimeError(
            f"the run's S3 listens at {info.s3_url}, which a container cannot reach: stop the "
            f"stack (04_deploy with teardown=True) and upload again with target='sam-local' "
            f"(S3 then listens at the Docker bridge's gateway, {gateway})"
        )
    project = sam_local.stage_project(run_dir / SAM_PROJECT_DIR, model_path.resolve())
    sam_local.sam_build(project, echo=True)
    api = sam_local.start_api_on_stack(project, info, parameters)
    print(f"sam local start-api (pid {api.pid}), log {api.log_file}", flush=True)
    memory_mb = int(parameters[MEMORY_PARAMETER] or local_stack.template_memory_mb())
    return Deployment("sam-local", api.predict_url, memory_mb, info.region, "sam-local", 1)


def teardown(target: str, run_dir: Path, *, bucket: str, region: str, stack_name: str) -> str:
    """Delete what deploy and upload made; return what was done."""
    if check_target(target) in LOCAL_TARGETS:
        stopped = sam_local.stop_api(run_dir / SAM_PROJECT_DIR)
        local_stack.stop(run_dir)
        api = "sam local start-api and its containers, " if stopped else ""
        return f"{api}local stack stopped (its S3 objects with it)"
    import boto3

    aws_deploy.run(aws_deploy.delete_command(stack_name, region))
    removed = s3_data.empty_and_delete_bucket(boto3.client("s3", region_name=region), bucket)
    return f"deleted stack {stack_name} and bucket {bucket} ({removed} objects)"


def stop_local(run_dir: Path) -> bool:
    """Stop the run's local stack and ``sam local start-api`` if they run; True when one did."""
    stopped = sam_local.stop_api(run_dir / SAM_PROJECT_DIR)
    if local_stack.read(run_dir) is None:
        return stopped
    local_stack.stop(run_dir)
    return True
