"""The local stack's server: S3 (moto, IAM enforced), the function's sandboxed environments (the
AWS Lambda Runtime Interface Emulator) and the API Gateway front, in one supervising process.

:func:`serve` (``mnist-lambda serve``) owns every child process. It prints one JSON line when the
stack is ready (also to the state file), then logs to stderr. SIGTERM or Ctrl-C stops
everything; SIGHUP redeploys (fresh environments on a fresh copy of the app, so the next request
is a cold start; S3 stays) with the :class:`.protocol.DeployRequest` a client left, if any.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import queue
import re
import signal
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from mnist_lambda.aws_limits import API_GATEWAY_TIMEOUT_S
from mnist_lambda.local_stack import procs
from mnist_lambda.local_stack.api_front.auth import Principal, method_arn
from mnist_lambda.local_stack.api_front.server import ApiFront
from mnist_lambda.local_stack.environment import function_environment
from mnist_lambda.local_stack.lambda_emulator import FunctionPool
from mnist_lambda.local_stack.protocol import DEFAULT_BUCKET, DEFAULT_REGION, DeployRequest
from mnist_lambda.local_stack.s3_server import (
    MotoIdentities,
    S3Server,
    allow_invoke,
    create_callers,
)
from mnist_lambda.local_stack.sandbox import Sandbox
from mnist_lambda.local_stack.task_root import TaskRootError, build
from mnist_lambda.paths import lambda_app_dir
from mnist_lambda.storage import atomic_write_json
from mnist_lambda.template import BUCKET_PARAMETER, template_path
from mnist_lambda.template.reader import (
    AUTH_API_KEY,
    AUTH_IAM,
    AUTH_NONE,
    StackSpec,
    TemplateError,
    load_stack_spec,
    load_template,
)

log = logging.getLogger("mnist_lambda.local_stack")

_READY_LINE = (
    "ready: POST {predict_url} (auth {auth_type}; S3 {s3_url}, bucket {bucket}, "
    "{instances} instance(s); "
    "Python {python}, user {user}; {limits})"
)
_SIGNALS = {signal.SIGTERM: "stop", signal.SIGINT: "stop", signal.SIGHUP: "redeploy"}
_START_ERRORS = (TemplateError, TaskRootError, OSError, RuntimeError, TimeoutError)


@dataclass(frozen=True)
class StackConfig:
    """What a stack serves, and where (``mnist-lambda serve``'s options)."""

    template: Path = field(default_factory=template_path)
    app_dir: Path = field(default_factory=lambda_app_dir)  # the function's code, the task root
    model_path: Path | None = None  # served instead of the app's model/
    instances: int = 1  # environments per function (0: none until a redeploy brings some)
    bucket: str = DEFAULT_BUCKET
    region: str = DEFAULT_REGION
    port: int = 0  # the API's (0: a free port)
    s3_port: int = 0
    s3_host: str = procs.HOST  # the Docker bridge's gateway lets a container reach S3
    state_file: Path | None = None  # the ready JSON, while the stack runs
    parameters: Mapping[str, str] = field(default_factory=dict)  # template parameter overrides
    env: Mapping[str, str] = field(default_factory=dict)  # extra function variables
    handler: str | None = None  # instead of the template's
    integration_timeout: float = API_GATEWAY_TIMEOUT_S

    def deployed(self, request: DeployRequest) -> StackConfig:
        """This configuration with a client's deploy request applied."""
        return dataclasses.replace(
            self,
            model_path=request.model_path or self.model_path,
            instances=self.instances if request.instances is None else request.instances,
            parameters={**self.parameters, **request.parameters},
        )


class LocalStack:
    """S3 (moto) + one :class:`FunctionPool` per function + the API front, in this process."""

    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self.s3 = S3Server(config.s3_port, config.region, host=config.s3_host)
        self.pools: dict[str, FunctionPool] = {}
        self.front: ApiFront | None = None
        self.sandbox: Sandbox | None = None
        self.identities = MotoIdentities(self.s3)  # the API's IAM callers (AWS_IAM methods)
        self.callers: dict[str, Principal] = {}  # "allowed" / "denied" -> caller
        self._caller_arns: list[str] = []  # what the allowed caller may invoke
        self.s3_env: dict[str, str] = {}  # how the function reaches S3, and -e variables
        self.generation, self.started_at, self._ready = 0, "", False
        self._state_lock = threading.Lock()

    def start(self) -> dict[str, Any]:
        """Start everything; return the ready info (also written to the state file)."""
        self._check()
        config = self.config
        if BUCKET_PARAMETER in (load_template(config.template).get("Parameters") or {}):
            parameters = {**config.parameters}
            parameters.setdefault(BUCKET_PARAMETER, config.bucket)
            self.config = config = dataclasses.replace(config, parameters=parameters)
        spec = self.load_spec(config)
        self.sandbox = Sandbox(build(config.app_dir / "requirements.txt"))
        self.s3_env = self._start_s3(spec)
        for logical_id, function in spec.functions.items():
            self.pools[logical_id] = pool = FunctionPool(
                function,
                function_environment(function, self.s3_env),
                config.app_dir,
                config.instances,
                sandbox=self.sandbox,
                model_path=config.model_path,
                on_change=self.write_state,
            )
            pool.start()
        self._create_callers(spec)
        self.front = ApiFront(
            spec,
            self.pools,
            port=config.port,
            integration_timeout=config.integration_timeout,
            identities=self.identities,
            region=config.region,
        )
        self.front.start()
        self.started_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self._ready = True
        self.write_state()
        return self.info()

    def _check(self) -> None:
        """Refuse what cannot start: a missing app or model, a busy API port."""
        config = self.config
        if not config.app_dir.is_dir():
            raise FileNotFoundError(f"app dir {config.app_dir} does not exist")
        if config.model_path is not None and not config.model_path.is_file():
            raise FileNotFoundError(f"model {config.model_path} does not exist")
        if config.port and procs.port_open(config.port):
            raise RuntimeError(f"API port {config.port} is already in use")

    def _start_s3(self, spec: StackSpec) -> dict[str, str]:
        """Start S3 with the functions' policies and the bucket; return the variables that let
        the function reach it with its own key (and the ``-e`` ones)."""
        self.s3.policies = [p for f in spec.functions.values() for p in f.policies]
        s3_url = self.s3.start()
        self.s3.create_bucket(self.config.bucket)
        assert self.s3.credentials is not None
        keys = self.s3.credentials.function
        return {
            "AWS_ENDPOINT_URL_S3": s3_url,
            "AWS_ACCESS_KEY_ID": keys.aws_access_key_id,
            "AWS_SECRET_ACCESS_KEY": keys.aws_secret_access_key,
            "AWS_DEFAULT_REGION": self.config.region,
            "AWS_REGION": self.config.region,
            **self.config.env,
        }

    def method_arns(self, spec: StackSpec) -> list[str]:
        """The ``execute-api:Invoke`` resources of ``spec``'s AWS_IAM methods (``*`` for a path
        parameter or ANY)."""
        arns = (
            method_arn(
                self.config.region,
                r.api,
                r.stage,
                "*" if r.method == "ANY" else r.method,
                re.sub(r"\{[^}]+\}", "*", r.path),
            )
            for r in spec.routes
            if r.auth == AUTH_IAM
        )
        return list(dict.fromkeys(arns))

    def _create_callers(self, spec: StackSpec, *, again: bool = False) -> None:
        """The API's allowed and denied IAM callers, once a method needs SigV4 (``again``
        after a restart of moto); a redeploy that changes the methods changes the allowed
        caller's policy to them."""
        arns = self.method_arns(spec)
        assert self.s3.credentials is not None
        admin = self.s3.credentials.admin
        if self.callers and not again:
            if arns and arns != self._caller_arns:
                allow_invoke(self.s3.url, self.config.region, admin, arns)
                self._caller_arns = arns
            return
        if not arns:
            return
        self.callers = create_callers(self.s3.url, self.config.region, admin, arns)
        self._caller_arns = arns
        self.identities.principals.clear()
        for principal in self.callers.values():
            self.identities.add(principal)
        log.info(
            "API callers (IAM users): %s",
            ", ".join(f"{k} {p.arn} ({p.access_key_id})" for k, p in self.callers.items()),
        )

    def auth_info(self) -> dict[str, Any]:
        """The ready JSON's ``auth``: how callers authenticate, with what (secrets included:
        the ready line already carries the stack's S3 keys)."""
        assert self.front is not None
        spec, kinds = self.front.spec, {r.auth for r in self.front.spec.routes}
        kind = (
            AUTH_IAM if AUTH_IAM in kinds else AUTH_API_KEY if AUTH_API_KEY in kinds else AUTH_NONE
        )
        info: dict[str, Any] = {"type": kind}
        if AUTH_IAM in kinds:
            info |= {
                "region": self.config.region,
                "service": "execute-api",
                "callers": {
                    role: {
                        "aws_access_key_id": p.access_key_id,
                        "aws_secret_access_key": p.secret_access_key,
                        "arn": p.arn,
                    }
                    for role, p in self.callers.items()
                },
                "method_arns": self.method_arns(spec),
            }
        if AUTH_API_KEY in kinds:
            info |= {"header": "x-api-key", **self.front.api_keys.describe()}
        return info

    @staticmethod
    def load_spec(config: StackConfig) -> StackSpec:
        """The template resolved with ``config``'s parameter overrides (its handler applied)."""
        spec = load_stack_spec(config.template, config.parameters, region=config.region)
        for warning in spec.warnings:
            log.warning("template: %s", warning)
        functions = {
            k: dataclasses.replace(f, handler=config.handler or f.handler)
            for k, f in spec.functions.items()
        }
        return dataclasses.replace(spec, functions=functions)

    def info(self) -> dict[str, Any]:
        """The ready JSON: URLs, credentials, the sandbox, pids and the current generation."""
        assert self.front is not None and self.sandbox is not None and self.s3.credentials
        front, config = self.front, self.config
        routes = [
            {**dataclasses.asdict(r), "url": f"{front.url}/{r.stage}{r.path}"}
            for r in front.spec.routes
        ]
        predict = next(
            (r for r in routes if r["path"] == "/predict" and r["method"] in ("POST", "ANY")),
            routes[0],
        )
        return {
            "predict_url": predict["url"],
            "api_url": f"{front.url}/{predict['stage']}",
            "stage": predict["stage"],
            "routes": routes,
            "s3_url": self.s3.url,
            "s3_credentials": self.s3.credentials.admin.as_kwargs(),
            # the function principal's keys (its template policy): for a function run elsewhere
            # against this S3, such as `sam local` in a container
            "function_credentials": self.s3.credentials.function.as_kwargs(),
            "auth": self.auth_info(),
            "bucket": config.bucket,
            "region": config.region,
            "sandbox": self.sandbox.describe(),
            "instances": config.instances,
            "generation": self.generation,
            "pid": os.getpid(),
            "pid_start_time": psutil.Process().create_time(),  # guards against pid reuse
            "port": front.port,
            "s3_port": self.s3.port,
            "s3_pid": self.s3.pid,
            "emulator_pids": sorted(p for pool in self.pools.values() for p in pool.pids()),
            "functions": {k: p.spec_summary() for k, p in self.pools.items()},
            "parameters": dict(config.parameters),
            "integration_timeout": config.integration_timeout,
            "template": str(config.template),
            "app_dir": str(config.app_dir),
            "model_path": str(config.model_path) if config.model_path else None,
            "state_file": str(config.state_file) if config.state_file else None,
            "started_at": self.started_at,
        }

    def write_state(self) -> None:
        """Rewrite the state file (after start, a redeploy, an environment replacement)."""
        with self._state_lock:
            if self._ready and self.config.state_file is not None:
                atomic_write_json(self.config.state_file, self.info())

    def redeploy(self) -> int:
        """Replace all environments with fresh ones, with the settings a client asked for (a
        model path, a number of environments, template parameters) if it did; S3 keeps
        running (the function's IAM policy stays the one the stack started with)."""
        state_file = self.config.state_file
        request = DeployRequest.take(state_file.parent) if state_file else DeployRequest()
        config = self.config.deployed(request)
        spec = self.load_spec(config)
        for logical_id, pool in self.pools.items():
            function = spec.functions[logical_id]
            pool.redeploy(
                function,
                function_environment(function, self.s3_env),
                instances=config.instances,
                model_path=config.model_path,
            )
        self.config = config
        if self.front is not None:
            self._create_callers(spec)
            self.front.configure(spec)
        self.generation += 1
        self.write_state()
        log.info("redeployed: generation %d", self.generation)
        return self.generation

    def check_health(self) -> None:
        """Restart a dead S3 server (same port, same keys); replace dead idle environments."""
        if not self.s3.alive():
            log.error("S3 server exited; restarting it on port %d (objects lost)", self.s3.port)
            self.s3.start()
            self.s3.create_bucket(self.config.bucket)
            if self.front is not None:
                self._create_callers(self.front.spec, again=True)
            self.write_state()
        for pool in self.pools.values():
            pool.reap_dead()

    def close(self) -> None:
        """Stop the front, the environments and S3; remove the state file."""
        with self._state_lock:
            self._ready = False  # no state writes from here on
        if self.front is not None:
            self.front.stop()
        for pool in self.pools.values():
            pool.close()
        if self.sandbox is not None:
            self.sandbox.close()
        self.s3.stop()
        if (state := self.config.state_file) is not None and state.exists():
            with contextlib.suppress(OSError, ValueError):
                if json.loads(state.read_text()).get("pid") == os.getpid():
                    state.unlink()


def serve(config: StackConfig) -> int:
    """Run a stack until SIGTERM/SIGINT: 0 on a clean stop, 1 if it could not start."""
    events: queue.SimpleQueue[str] = queue.SimpleQueue()
    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for signum, event in _SIGNALS.items():
            previous[signum] = signal.signal(signum, lambda *_, e=event: events.put(e))
    stack = LocalStack(config)
    try:
        try:
            info = stack.start()
        except _START_ERRORS as exc:
            log.error("local stack failed to start: %s", exc)
            return 1
        print(json.dumps(info), flush=True)
        log.info(_READY_LINE.format(**info, **info["sandbox"], auth_type=info["auth"]["type"]))
        _supervise(stack, events)
        return 0
    except KeyboardInterrupt:
        return 0
    finally:
        stack.close()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        log.info("stopped")


def _supervise(stack: LocalStack, events: queue.SimpleQueue[str]) -> None:
    """Check the stack's health every second and redeploy on request, until a stop."""
    while True:
        try:
            event = events.get(timeout=1.0)
        except queue.Empty:
            try:
                stack.check_health()
            except Exception:
                log.exception("health check failed")
            continue
        if event == "stop":
            log.info("shutting down")
            return
        try:
            stack.redeploy()
        except Exception:
            log.exception("redeploy failed; the previous environments keep serving")
