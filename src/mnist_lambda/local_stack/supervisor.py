"""mnist-lambda serve: start S3 (moto, IAM enforced), the function's sandboxed environments
(the AWS Lambda Runtime Interface Emulator) and the API Gateway front; supervise them.

The supervisor owns every child process. It prints one JSON line when the stack is ready (also
to ``--state-file``), then logs to stderr. SIGTERM or Ctrl-C stops everything; SIGHUP redeploys
(fresh environments on a fresh copy of the app, so the next request is a cold start; S3 stays).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psutil

from mnist_lambda.aws_limits import API_GATEWAY_TIMEOUT_S
from mnist_lambda.local_stack import DEFAULT_BUCKET, DEFAULT_REGION, DEPLOY_REQUEST_NAME, procs
from mnist_lambda.local_stack.api_front import ApiFront
from mnist_lambda.local_stack.lambda_emulator import FunctionPool, function_environment
from mnist_lambda.local_stack.s3_server import S3Server
from mnist_lambda.local_stack.sandbox import Sandbox
from mnist_lambda.local_stack.task_root import TaskRootError, build
from mnist_lambda.paths import lambda_app_dir
from mnist_lambda.storage import atomic_write_json
from mnist_lambda.template import BUCKET_PARAMETER, TEMPLATE_NAME, template_path
from mnist_lambda.template.reader import (
    StackSpec,
    TemplateError,
    load_stack_spec,
    load_template,
)

log = logging.getLogger("mnist_lambda.local_stack")

_READY_LINE = (
    "ready: POST {predict_url} (S3 {s3_url}, bucket {bucket}, {instances} instance(s); "
    "Python {python}, user {user}; {limits})"
)
_SIGNALS = {signal.SIGTERM: "stop", signal.SIGINT: "stop", signal.SIGHUP: "redeploy"}


class LocalStack:
    """S3 (moto) + one :class:`FunctionPool` per function + the API front, in this process."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.s3 = S3Server(args.s3_port, args.region, host=args.s3_host)
        self.pools: dict[str, FunctionPool] = {}
        self.front: ApiFront | None = None
        self.sandbox: Sandbox | None = None
        self.generation, self.started_at, self._ready = 0, "", False
        self._state_lock = threading.Lock()

    def start(self) -> dict[str, Any]:
        """Start everything; return the ready info (also written to the state file)."""
        args = self.args
        if not args.app_dir.is_dir():
            raise FileNotFoundError(f"app dir {args.app_dir} does not exist")
        if args.model_path is not None and not args.model_path.is_file():
            raise FileNotFoundError(f"model {args.model_path} does not exist")
        if args.port and procs.port_open(args.port):
            raise RuntimeError(f"API port {args.port} is already in use")
        self.overrides = dict(args.parameter)
        if BUCKET_PARAMETER in (load_template(args.template).get("Parameters") or {}):
            self.overrides.setdefault(BUCKET_PARAMETER, args.bucket)
        spec = self.load_spec()
        self.sandbox = Sandbox(build(args.app_dir / "requirements.txt"))
        self.s3.policies = [p for f in spec.functions.values() for p in f.policies]
        s3_url = self.s3.start()
        self.s3.create_bucket(args.bucket)
        assert self.s3.credentials is not None
        keys = self.s3.credentials.function
        self.env = env = {
            "AWS_ENDPOINT_URL_S3": s3_url,
            "AWS_ACCESS_KEY_ID": keys.aws_access_key_id,
            "AWS_SECRET_ACCESS_KEY": keys.aws_secret_access_key,
            "AWS_DEFAULT_REGION": args.region,
            "AWS_REGION": args.region,
            **dict(args.env),
        }
        for logical_id, fspec in spec.functions.items():
            self.pools[logical_id] = pool = FunctionPool(
                fspec,
                function_environment(fspec, env),
                args.app_dir,
                args.instances,
                sandbox=self.sandbox,
                model_path=args.model_path,
                on_change=self.write_state,
            )
            pool.start()
        self.front = ApiFront(spec, self.pools, port=args.port, integration_timeout=args.timeout)
        self.front.start()
        self.started_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self._ready = True
        self.write_state()
        return self.info()

    def load_spec(self) -> StackSpec:
        """The template resolved with this stack's parameter overrides (``--handler`` applied)."""
        args = self.args
        spec = load_stack_spec(args.template, self.overrides, region=args.region)
        for warning in spec.warnings:
            log.warning("template: %s", warning)
        handler = {k: args.handler or f.handler for k, f in spec.functions.items()}
        functions = {
            k: dataclasses.replace(f, handler=handler[k]) for k, f in spec.functions.items()
        }
        return dataclasses.replace(spec, functions=functions)

    def info(self) -> dict[str, Any]:
        """The ready JSON: URLs, credentials, the sandbox, pids and the current generation."""
        assert self.front is not None and self.sandbox is not None and self.s3.credentials
        front, args = self.front, self.args
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
            "bucket": args.bucket,
            "region": args.region,
            "sandbox": self.sandbox.describe(),
            "instances": args.instances,
            "generation": self.generation,
            "pid": os.getpid(),
            "pid_start_time": psutil.Process().create_time(),  # guards against pid reuse
            "port": front.port,
            "s3_port": self.s3.port,
            "s3_pid": self.s3.pid,
            "emulator_pids": sorted(p for pool in self.pools.values() for p in pool.pids()),
            "functions": {k: p.spec_summary() for k, p in self.pools.items()},
            "parameters": self.overrides,
            "integration_timeout": args.timeout,
            "template": str(args.template),
            "app_dir": str(args.app_dir),
            "model_path": str(args.model_path) if args.model_path else None,
            "state_file": str(args.state_file) if args.state_file else None,
            "started_at": self.started_at,
        }

    def write_state(self) -> None:
        """Rewrite the state file (after start, a redeploy, an environment replacement)."""
        with self._state_lock:
            if self._ready and self.args.state_file is not None:
                atomic_write_json(self.args.state_file, self.info())

    def redeploy(self) -> int:
        """Replace all environments with fresh ones, with the settings a client asked for (a
        model path, a number of environments, template parameters) if it did; S3 keeps
        running (the function's IAM policy stays the one the stack started with)."""
        request = self.args.state_file and self.args.state_file.with_name(DEPLOY_REQUEST_NAME)
        settings = json.loads(request.read_text()) if request and request.exists() else {}
        if request:
            request.unlink(missing_ok=True)
        self.args.instances = settings.get("instances", self.args.instances)
        if "model_path" in settings:
            self.args.model_path = Path(settings["model_path"]).resolve()
        self.overrides |= {k: str(v) for k, v in (settings.get("parameters") or {}).items()}
        spec = self.load_spec()
        for logical_id, pool in self.pools.items():
            fspec = spec.functions[logical_id]
            pool.spec, pool.env = fspec, function_environment(fspec, self.env)
            pool.instances, pool.model_path = self.args.instances, self.args.model_path
            pool.redeploy()
        if self.front is not None:
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
            self.s3.create_bucket(self.args.bucket)
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
        if (state := self.args.state_file) is not None and state.exists():
            with contextlib.suppress(OSError, ValueError):
                if json.loads(state.read_text()).get("pid") == os.getpid():
                    state.unlink()


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


HELP = "the local stack: S3 (IAM enforced) + sandboxed Lambda emulator + API Gateway front"
EXAMPLES = """examples:
  mnist-lambda serve --instances 2
  mnist-lambda serve --model-path outputs/<run>/model/model.npz -P MemorySize=885
  mnist-lambda serve --model-path outputs/<run>/model/model.onnx -P SnapStart=PublishedVersions
  mnist-lambda serve -P DataKeyPrefix=inputs/ -e LOG_LEVEL=DEBUG --port 8080
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``mnist-lambda serve`` options."""
    p.set_defaults(template=template_path(), app_dir=lambda_app_dir())
    p.set_defaults(timeout=API_GATEWAY_TIMEOUT_S, parameter=[], env=[])
    add = p.add_argument
    add("--port", type=int, default=0, help="API port (default: a free port)")
    add("--s3-port", type=int, default=0, help="S3 port (default: a free port)")
    s3_host_help = (
        f"S3 address (default: {procs.HOST}); the Docker bridge's gateway lets a container "
        "(`sam local`) reach it"
    )
    add("--s3-host", default=procs.HOST, help=s3_host_help)
    add("--instances", type=int, default=1, help="environments (concurrency); 0: none yet")
    add("--bucket", default=DEFAULT_BUCKET, help=f"data bucket (default: {DEFAULT_BUCKET})")
    add("--template", type=Path, help=f"SAM template (default: <repo>/{TEMPLATE_NAME})")
    add("--app-dir", type=Path, help="function code, the task root (default: <repo>/lambda_app)")
    add("--model-path", type=Path, help="serve this model (.npz or .onnx, with its manifest)")
    add("--state-file", type=Path, help="also write the ready JSON here; removed on shutdown")
    add("--region", default=DEFAULT_REGION, help=f"(default: {DEFAULT_REGION})")
    timeout_help = "API Gateway integration timeout in seconds (default: 29)"
    add("--integration-timeout", dest="timeout", type=float, help=timeout_help)
    pairs = {"action": "append", "type": _key_value, "metavar": "KEY=VALUE"}
    add("--parameter", "-P", **pairs, help="template parameter override (repeatable)")
    add("--env", "-e", **pairs, help="extra function environment variable (repeatable)")
    add("--handler", help="override the handler (default: from the template/Dockerfile)")
    add("--verbose", "-v", action="store_true", help="debug logs (RIE, moto)")


def _configure_logging(verbose: bool) -> None:
    log.setLevel(logging.DEBUG if verbose else logging.INFO)
    if not logging.getLogger().handlers and not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        log.addHandler(handler)
        log.propagate = False


def serve_main(argv: Sequence[str] | None = None) -> int:
    """``python -m mnist_lambda.local_stack``: parse ``argv`` and :func:`main`."""
    parser = argparse.ArgumentParser(
        prog="mnist-lambda serve",
        description=__doc__,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    return main(parser.parse_args(argv))


def main(args: argparse.Namespace) -> int:
    """Run the local stack until SIGTERM/SIGINT; return the exit code (0 on a clean stop)."""
    _configure_logging(args.verbose)
    if args.instances < 0:
        log.error("--instances must be >= 0")
        return 2
    for name in ("template", "app_dir", "model_path", "state_file"):
        if getattr(args, name) is not None:
            setattr(args, name, getattr(args, name).resolve())
    events: queue.SimpleQueue[str] = queue.SimpleQueue()
    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for signum, event in _SIGNALS.items():
            previous[signum] = signal.signal(signum, lambda *_, e=event: events.put(e))
    stack = LocalStack(args)
    try:
        try:
            info = stack.start()
        except (TemplateError, TaskRootError, OSError, RuntimeError, TimeoutError) as exc:
            log.error("local stack failed to start: %s", exc)
            return 1
        print(json.dumps(info), flush=True)
        log.info(_READY_LINE.format(**info, **info["sandbox"]))
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
                return 0
            try:
                stack.redeploy()
            except Exception:
                log.exception("redeploy failed; the previous environments keep serving")
    except KeyboardInterrupt:
        return 0
    finally:
        stack.close()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        log.info("stopped")
