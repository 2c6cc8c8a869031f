"""Before a ``target=aws`` or ``sam-local`` run: is everything its steps need here? Each gap,
with its fix.

:func:`check_aws` checks AWS credentials (and whom they belong to, with one short STS call), a
Docker engine for ``sam build``, the SAM CLI, the bucket name and the region.
:func:`check_sam_local` checks the SAM CLI, a Docker engine and the Dockerfile's base image (AWS's,
or the means to build its stand-in). :func:`check_run` decides from a run's parameters and steps
which of those apply.
Nothing here changes anything, locally or on AWS.
"""

from __future__ import annotations

import ipaddress
import re
import shutil
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Any

import boto3
from botocore import exceptions as bx
from botocore.config import Config
from botocore.loaders import create_loader
from botocore.regions import EndpointResolver

from mnist_lambda.deploy import targets
from mnist_lambda.image import base, docker_engine
from mnist_lambda.image.sam_local import sam_executable
from mnist_lambda.pipeline import runner

NO_CREDENTIALS_FIX = "set AWS_PROFILE or run `aws configure` (or `aws sso login`)"
_BUCKET_CHARS = re.compile(r"[a-z0-9.-]+")
_RESERVED_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
_RESERVED_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")


@dataclass(frozen=True)
class Problem:
    """One missing piece: which check, what is wrong, what to do about it."""

    check: str
    message: str
    fix: str

    def __str__(self) -> str:
        return f"{self.message}: {self.fix}"


def bucket_name_errors(name: str) -> list[str]:
    """Every S3 naming rule for general purpose buckets that ``name`` breaks."""
    errors = []
    if not 3 <= len(name) <= 63:
        errors.append(f"is {len(name)} characters long, not 3 to 63")
    if not _BUCKET_CHARS.fullmatch(name):
        errors.append("may hold only lowercase letters, digits, dots and hyphens")
    if not (name[:1].isalnum() and name[-1:].isalnum()):
        errors.append("must begin and end with a letter or digit")
    if ".." in name:
        errors.append("must not contain two adjacent dots")
    try:
        ipaddress.IPv4Address(name)
        errors.append("must not look like an IP address")
    except ValueError:
        pass
    errors += [f"must not start with {p!r}" for p in _RESERVED_PREFIXES if name.startswith(p)]
    errors += [f"must not end with {s!r}" for s in _RESERVED_SUFFIXES if name.endswith(s)]
    return errors


def check_bucket(bucket: str) -> list[Problem]:
    """A problem when ``bucket`` is not a valid S3 bucket name."""
    errors = bucket_name_errors(bucket)
    if not errors:
        return []
    return [
        Problem(
            "bucket",
            f"invalid bucket name {bucket!r} ({'; '.join(errors)})",
            "pass a globally unique name of yours, e.g. `-p bucket mnist-lambda-<account id>`",
        )
    ]


def known_regions(service: str = "lambda") -> set[str]:
    """The regions boto3's bundled endpoint data lists for ``service``, in every partition."""
    # the endpoint data alone: a session would read the profile, which may not exist
    resolver = EndpointResolver(create_loader().load_data("endpoints"))
    return {
        region
        for partition in resolver.get_available_partitions()
        for region in resolver.get_available_endpoints(service, partition)
    }


def check_region(region: str, known: Iterable[str] | None = None) -> list[Problem]:
    """A problem when ``region`` is empty or not a region boto3 knows for Lambda."""
    known = set(known_regions() if known is None else known)
    if region in known:
        return []
    what = "no AWS region" if not region else f"unknown AWS region {region!r}"
    close = sorted(r for r in known if region and r.split("-")[0] == region.split("-")[0])
    examples = ", ".join(close[:4] or ["us-east-1", "eu-west-1"])
    fix = f"pass one boto3 knows with `-p region NAME`, e.g. {examples}"
    return [Problem("region", what, fix)]


def check_docker(
    timeout: float = 10.0, which: Callable[[str], str | None] = shutil.which
) -> list[Problem]:
    """A problem unless a Docker engine answers: ``sam build`` builds the image with Docker."""
    found = docker_engine.probe_engine(timeout, which)
    return [Problem("docker", *found)] if found else []


def check_sam() -> list[Problem]:
    """A problem when the SAM CLI is not installed."""
    try:
        sam_executable()
    except RuntimeError as exc:
        return [Problem("sam", "no SAM CLI", str(exc).split(": ", 1)[-1])]
    return []


def check_sam_local() -> list[Problem]:
    """What ``target=sam-local`` needs: the SAM CLI, a Docker engine, and the base image (present,
    or the files to build its stand-in; a pull is tried only when the build needs it)."""
    problems = check_sam() + check_docker()
    if problems:
        return problems
    if (why := base.base_problem()) is not None:
        fix = f"`docker pull {base.base_tag()}` where that registry is reachable, or {why[1]}"
        return [Problem("base image", why[0], fix)]
    return []


def caller_identity(
    region: str, timeout: float = 5.0, session: Any = None
) -> tuple[dict[str, Any] | None, list[Problem]]:
    """Whom the resolvable credentials belong to (STS, one try, short timeouts), or why not."""
    try:
        session = session or boto3.session.Session()
        credentials = session.get_credentials()
    except bx.BotoCoreError as exc:  # a missing profile, an expired SSO token...
        message = f"AWS credentials cannot be loaded ({exc})"
        return None, [Problem("credentials", message, NO_CREDENTIALS_FIX)]
    if credentials is None:
        return None, [Problem("credentials", "no AWS credentials", NO_CREDENTIALS_FIX)]
    config = Config(
        connect_timeout=timeout,
        read_timeout=timeout,
        retries={"total_max_attempts": 1, "mode": "standard"},
    )
    try:
        sts = session.client("sts", region_name=region or None, config=config)
        return sts.get_caller_identity(), []
    except bx.ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "error")
        message = f"AWS rejected the credentials ({code})"
        return None, [Problem("credentials", message, f"refresh them: {NO_CREDENTIALS_FIX}")]
    except (bx.ConnectionError, bx.HTTPClientError) as exc:
        message = f"cannot reach AWS STS to check the credentials ({exc})"
        fix = "check the network, the proxy (HTTPS_PROXY) and the region"
        return None, [Problem("network", message, fix)]
    except bx.BotoCoreError as exc:
        message = f"AWS credentials unusable ({exc})"
        return None, [Problem("credentials", message, NO_CREDENTIALS_FIX)]


def check_aws(
    bucket: str | None,
    region: str,
    *,
    docker: bool = True,
    timeout: float = 5.0,
    session: Any = None,
    out: IO[str] | None = None,
) -> list[Problem]:
    """Everything a ``target=aws`` run needs, offline checks first; empty when all is there.

    ``bucket=None`` skips the bucket name (no selected step uses one); ``docker=False`` skips
    Docker and the SAM CLI (no ``sam build``, e.g. a teardown). With ``out``, says whose
    credentials the run will use.
    """
    problems = check_region(region)
    sts_region = "us-east-1" if problems else region  # STS needs a region that exists
    if bucket is not None:
        problems += check_bucket(bucket)
    if docker:
        problems += check_sam() + check_docker()
    identity, trouble = caller_identity(sts_region, timeout=timeout, session=session)
    if identity and out:
        print(f"AWS credentials: {identity['Arn']} (account {identity['Account']})", file=out)
    return problems + trouble


def check_run(
    parameters: Mapping[str, Any],
    steps: Sequence[str] | None = None,
    base: Mapping[str, Mapping[str, Any]] | None = None,
    out: IO[str] | None = None,
) -> list[Problem]:
    """:func:`check_aws` and :func:`check_sam_local` for a ``mnist-lambda run``, for its steps
    that run with ``target=aws`` or ``sam-local``.

    Each step's values are the runner's own (:func:`runner.plan_parameters`): its notebook's
    defaults, then ``base`` (a replay's per-step parameters), then ``parameters`` (``-p``).
    ``out``: as in :func:`check_aws`.
    """
    try:
        selected = runner.select_steps(steps)
        plans = runner.plan_parameters(selected, parameters, base)
    except runner.RunError:
        return []  # runner.run says which steps or parameters are unknown
    effective = runner.effective_parameters(selected, plans)
    buckets: list[str] = []
    regions: list[str] = []
    building = aws = sam_local = False
    problems = _auth_problems(effective.values())
    for step in selected:
        values = effective[step.name]
        if values.get("target") not in ("aws", "sam-local"):
            continue
        if values["target"] == "sam-local":  # a teardown only stops processes
            sam_local |= not (step.name == "deploy" and values.get("teardown"))
            continue
        aws = True
        if "bucket" in values and str(values["bucket"]) not in buckets:
            buckets.append(str(values["bucket"]))
        if str(values.get("region") or "") not in regions:
            regions.append(str(values.get("region") or ""))
        building |= step.name == "deploy" and not values.get("teardown")
    problems += check_sam_local() if sam_local else []
    if not aws:
        return problems
    problems += check_aws(buckets[0] if buckets else None, regions[0], docker=building, out=out)
    for region in regions[1:]:
        problems += check_region(region)
    for bucket in buckets[1:]:
        problems += check_bucket(bucket)
    return list(dict.fromkeys(problems))  # Docker and SAM once, when both targets need them


def _auth_problems(steps: Iterable[Mapping[str, Any]]) -> list[Problem]:
    """A problem for an unknown ``auth``, or one the step's target does not enforce."""
    problems = []
    for values in steps:
        if "auth" not in values:
            continue
        try:
            targets.check_auth(str(values["auth"]), str(values.get("target", "local")))
        except ValueError as exc:
            message, _, fix = str(exc).partition(": ")
            problems.append(Problem("auth", message, fix or "see `mnist-lambda params`"))
    return list(dict.fromkeys(problems))


def report(problems: Sequence[Problem], file: IO[str] | None = None) -> int:
    """Print the problems for a person; the exit status a command should return (2, or 0)."""
    out = file or sys.stderr
    if problems:
        print("error: not ready to run (the target's needs are missing):", file=out)
        for problem in problems:
            print(f"  - {problem}", file=out)
    return 2 if problems else 0
