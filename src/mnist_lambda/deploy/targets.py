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
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mnist_lambda import local_stack
from mnist_lambda.deploy import aws_deploy, s3_data
from mnist_lambda.image import docker_engine, sam_local
from mnist_lambda.local_stack import protocol
from mnist_lambda.template import BUCKET_PARAMETER, MEMORY_PARAMETER

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


def check_target(target: str) -> str:
    """``target`` if it is known, else a ValueError that names the choices."""
    if target not in TARGETS:
        raise ValueError(f"target={target!r}: use {' or '.join(map(repr, TARGETS))}")
    return target


def s3_client(target: str, run_dir: Path, region: str, bucket: str, start: bool = False) -> Any:
    """A boto3 S3 client for ``target``; locally, the stack's S3 (started if ``start``)."""
    if check_target(target) == "aws":
        import boto3

        return boto3.Session(region_name=region).client("s3")
    info = local_stack.read(run_dir)
    if info is None and start:
        # S3 only (deploy deploys); for a container, at the Docker bridge's gateway
        host = docker_engine.bridge_gateway() if target == "sam-local" else ""
        info = local_stack.start(run_dir, bucket=bucket, instances=0, s3_host=host)
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
) -> Deployment:
    """Start or update the function and API on ``target``; return where ``POST /predict`` is.
    ``memory_size`` (MB; 0 keeps the template's default) reaches the function on every target."""
    parameters = {"Stage": stage, BUCKET_PARAMETER: bucket, MEMORY_PARAMETER: memory_size or ""}
    if check_target(target) == "local":
        info = _deploy_local(run_dir, Path(model_path), bucket, instances, memory_size)
        return Deployment("local", info.predict_url, info.memory_mb, region, "local", instances)
    if target == "sam-local":
        return _deploy_sam_local(run_dir, Path(model_path), parameters)
    aws_deploy.run(aws_deploy.validate_command(region=region))
    aws_deploy.run(aws_deploy.build_command())
    aws_deploy.run(aws_deploy.deploy_command(stack_name, region, parameters))
    url = aws_deploy.stack_outputs(stack_name, region)["PredictUrl"]
    memory_mb = memory_size or local_stack.template_memory_mb()
    return Deployment("aws", url, memory_mb, region, stack_name)


def _deploy_local(
    run_dir: Path, model_path: Path, bucket: str, instances: int, memory_size: int = 0
) -> local_stack.StackInfo:
    """Fresh environments serving ``model_path`` on the run's stack (its S3 objects kept)."""
    model_path = model_path.resolve()
    memory = {MEMORY_PARAMETER: str(memory_size)} if memory_size else {}
    if local_stack.read(run_dir) is None:
        print(f"starting the local stack in {run_dir} (S3 is empty: upload first)", flush=True)
        return local_stack.start(
            run_dir,
            bucket=bucket,
            instances=instances,
            model_path=model_path,
            extra_args=[arg for k, v in memory.items() for arg in ("-P", f"{k}={v}")],
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
