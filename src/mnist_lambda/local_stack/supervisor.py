"""``mnist-lambda serve``: start S3, the function instances and the API front; supervise them.

The supervisor owns every child process. It prints one JSON line when the stack is ready (and
writes it to ``--state-file``), then logs to stderr. SIGTERM or Ctrl-C stops everything; SIGHUP
redeploys (fresh function instances, so the next request is a cold start; S3 and its data stay).
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mnist_lambda.local_stack import procs
from mnist_lambda.local_stack.api_front import INTEGRATION_TIMEOUT_S, ApiFront
from mnist_lambda.local_stack.cfn_template import StackSpec, TemplateError, load_stack_spec
from mnist_lambda.local_stack.lambda_emulator import FunctionPool, function_environment
from mnist_lambda.local_stack.s3_server import S3Server

log = logging.getLogger("mnist_lambda.local_stack")

DEFAULT_BUCKET = "mnist-lambda-local"
DEFAULT_REGION = "us-east-1"
TEMPLATE_NAME = "template_no_auth.yaml"
APP_DIR_NAME = "lambda_app"


def repo_root() -> Path:
    """The project checkout (``src/mnist_lambda/local_stack`` -> repo), else the cwd."""
    root = Path(__file__).resolve().parents[3]
    return root if (root / APP_DIR_NAME).is_dir() else Path.cwd()


@dataclass
class StackConfig:
    """Everything ``serve`` needs; the defaults are the project's own files."""

    template: Path = field(default_factory=lambda: repo_root() / TEMPLATE_NAME)
    app_dir: Path = field(default_factory=lambda: repo_root() / APP_DIR_NAME)
    bucket: str = DEFAULT_BUCKET
    instances: int = 1
    port: int = 0
    s3_port: int = 0
    model_path: Path | None = None
    region: str = DEFAULT_REGION
    integration_timeout: float = INTEGRATION_TIMEOUT_S
    parameter_overrides: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    handler: str | None = None
    state_file: Path | None = None
    python: str = sys.executable


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to a temp file next to ``path`` and rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


class LocalStack:
    """S3 (moto) + one :class:`FunctionPool` per function + the API front, in this process."""

    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self.spec: StackSpec | None = None
        self.s3: S3Server | None = None
        self.pools: dict[str, FunctionPool] = {}
        self.front: ApiFront | None = None
        self.generation = 0
        self.started_at = ""
        self._state_lock = threading.Lock()
        self._ready = False

    def start(self) -> dict[str, Any]:
        """Start everything; return the ready info (also written to the state file)."""
        cfg = self.config
        if not cfg.app_dir.is_dir():
            raise FileNotFoundError(f"app dir {cfg.app_dir} does not exist")
        if cfg.model_path is not None and not cfg.model_path.is_file():
            raise FileNotFoundError(f"model {cfg.model_path} does not exist")
        if cfg.port and procs.port_open(cfg.port):
            raise RuntimeError(f"API port {cfg.port} is already in use")
        self.spec = load_stack_spec(cfg.template, cfg.parameter_overrides, region=cfg.region)
        for warning in self.spec.warnings:
            log.warning("template: %s", warning)
        self.s3 = S3Server(cfg.s3_port, cfg.region)
        s3_url = self.s3.start()
        self.s3.create_bucket(cfg.bucket)
        overrides = {
            "ALLOWED_BUCKETS": cfg.bucket,
            "AWS_ENDPOINT_URL_S3": s3_url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": cfg.region,
            "AWS_REGION": cfg.region,
            **cfg.env,
        }
        if cfg.model_path is not None:
            overrides["MODEL_PATH"] = str(cfg.model_path.resolve())
        for logical_id, fspec in self.spec.functions.items():
            if cfg.handler:
                fspec = dataclasses.replace(fspec, handler=cfg.handler)
            env = function_environment(fspec, cfg.app_dir.resolve(), overrides)
            pool = FunctionPool(
                fspec,
                env,
                cfg.app_dir.resolve(),
                cfg.instances,
                python=cfg.python,
                on_change=self.write_state,
            )
            self.pools[logical_id] = pool
            pool.start()
        self.front = ApiFront(
            self.spec, self.pools, port=cfg.port, integration_timeout=cfg.integration_timeout
        )
        self.front.start()
        self.started_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self._ready = True
        info = self.info()
        self.write_state()
        return info

    def info(self) -> dict[str, Any]:
        """The ready JSON: URLs, bucket, pids and the current generation."""
        assert self.front is not None and self.s3 is not None and self.spec is not None
        routes = [
            {
                "method": r.method,
                "path": r.path,
                "stage": r.stage,
                "function": r.function,
                "url": self.front.route_url(r),
            }
            for r in self.spec.routes
        ]
        predict = next(
            (r for r in routes if r["path"] == "/predict" and r["method"] in ("POST", "ANY")),
            routes[0],
        )
        return {
            "predict_url": predict["url"],
            "api_url": f"{self.front.url}/{predict['stage']}",
            "stage": predict["stage"],
            "routes": routes,
            "s3_url": self.s3.url,
            "bucket": self.config.bucket,
            "region": self.config.region,
            "instances": self.config.instances,
            "generation": self.generation,
            "pid": os.getpid(),
            "pid_start_ticks": procs.start_ticks(os.getpid()),
            "port": self.front.port,
            "s3_port": self.s3.port,
            "s3_pid": self.s3.pid,
            "emulator_pids": sorted(p for pool in self.pools.values() for p in pool.pids()),
            "functions": {
                k: {
                    "handler": p.spec.handler,
                    "timeout": p.spec.timeout,
                    "memory_size": p.spec.memory_size,
                }
                for k, p in self.pools.items()
            },
            "integration_timeout": self.config.integration_timeout,
            "template": str(self.config.template),
            "app_dir": str(self.config.app_dir),
            "model_path": str(self.config.model_path) if self.config.model_path else None,
            "state_file": str(self.config.state_file) if self.config.state_file else None,
            "started_at": self.started_at,
        }

    def write_state(self) -> None:
        """Rewrite the state file (after start, a redeploy, an instance replacement)."""
        with self._state_lock:
            if self._ready and self.config.state_file is not None:
                write_json_atomic(self.config.state_file, self.info())

    def redeploy(self) -> int:
        """Replace all function instances with fresh ones; S3 keeps running."""
        for pool in self.pools.values():
            pool.redeploy()
        self.generation += 1
        self.write_state()
        log.info("redeployed: generation %d", self.generation)
        return self.generation

    def check_health(self) -> None:
        """Restart a dead S3 server; replace dead idle function instances."""
        if self.s3 is not None and not self.s3.alive():
            log.error(
                "S3 server exited; restarting it on port %d (its objects are lost)", self.s3.port
            )
            self.s3.start()
            self.s3.create_bucket(self.config.bucket)
            self.write_state()
        for pool in self.pools.values():
            pool.reap_dead()

    def close(self) -> None:
        """Stop the front, the function instances and S3; remove the state file."""
        with self._state_lock:
            self._ready = False  # no state writes from here on
        if self.front is not None:
            self.front.stop()
        for pool in self.pools.values():
            pool.close()
        if self.s3 is not None:
            self.s3.stop()
        state = self.config.state_file
        if state is not None and state.exists():
            with contextlib.suppress(OSError, ValueError):
                if json.loads(state.read_text()).get("pid") == os.getpid():
                    state.unlink()


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def build_parser() -> argparse.ArgumentParser:
    """The ``mnist-lambda serve`` command line."""
    root = repo_root()
    p = argparse.ArgumentParser(
        prog="mnist-lambda serve",
        description="Local serverless stack without Docker or AWS: moto S3, the function under "
        "the AWS Lambda Runtime Interface Emulator, and an API Gateway front. Prints one JSON "
        "line when ready, then logs to stderr. SIGTERM/Ctrl-C stops, SIGHUP redeploys.",
    )
    p.add_argument("--port", type=int, default=0, help="API port (default: a free port)")
    p.add_argument("--s3-port", type=int, default=0, help="S3 port (default: a free port)")
    p.add_argument(
        "--instances",
        type=int,
        default=1,
        help="function instances, i.e. concurrency (default: 1)",
    )
    p.add_argument("--bucket", default=DEFAULT_BUCKET, help=f"bucket (default: {DEFAULT_BUCKET})")
    p.add_argument(
        "--template",
        type=Path,
        default=root / TEMPLATE_NAME,
        help=f"SAM template (default: <repo>/{TEMPLATE_NAME})",
    )
    p.add_argument(
        "--app-dir",
        type=Path,
        default=root / APP_DIR_NAME,
        help=f"function code, the task root (default: <repo>/{APP_DIR_NAME})",
    )
    p.add_argument(
        "--model-path",
        type=Path,
        default=None,
        help="set MODEL_PATH for the function to this file",
    )
    p.add_argument(
        "--state-file",
        type=Path,
        default=None,
        help="also write the ready JSON here (atomically); removed on shutdown",
    )
    p.add_argument("--region", default=DEFAULT_REGION, help=f"(default: {DEFAULT_REGION})")
    p.add_argument(
        "--integration-timeout",
        type=float,
        default=INTEGRATION_TIMEOUT_S,
        help="API Gateway integration timeout in seconds (default: 29)",
    )
    p.add_argument(
        "--parameter",
        "-P",
        action="append",
        type=_key_value,
        default=[],
        metavar="KEY=VALUE",
        help="template parameter override (repeatable)",
    )
    p.add_argument(
        "--env",
        "-e",
        action="append",
        type=_key_value,
        default=[],
        metavar="KEY=VALUE",
        help="extra function environment variable (repeatable)",
    )
    p.add_argument(
        "--handler",
        default=None,
        help="override the handler (default: from the template/Dockerfile)",
    )
    p.add_argument("--verbose", "-v", action="store_true", help="debug logs (RIE, moto)")
    return p


def _configure_logging(verbose: bool) -> None:
    level = logging.DEBUG if verbose else logging.INFO
    log.setLevel(level)
    if not logging.getLogger().handlers and not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        log.addHandler(handler)
        log.propagate = False


def serve_main(argv: Sequence[str] | None = None) -> int:
    """Run the local stack until SIGTERM/SIGINT; return the exit code (0 on a clean stop)."""
    args = build_parser().parse_args(argv)
    _configure_logging(args.verbose)
    if args.instances < 1:
        log.error("--instances must be >= 1")
        return 2
    config = StackConfig(
        template=args.template.resolve(),
        app_dir=args.app_dir.resolve(),
        bucket=args.bucket,
        instances=args.instances,
        port=args.port,
        s3_port=args.s3_port,
        model_path=args.model_path.resolve() if args.model_path else None,
        region=args.region,
        integration_timeout=args.integration_timeout,
        parameter_overrides=dict(args.parameter),
        env=dict(args.env),
        handler=args.handler,
        state_file=args.state_file.resolve() if args.state_file else None,
    )
    events: queue.SimpleQueue[str] = queue.SimpleQueue()
    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for signum, event in (
            (signal.SIGTERM, "stop"),
            (signal.SIGINT, "stop"),
            (signal.SIGHUP, "redeploy"),
        ):
            previous[signum] = signal.signal(signum, lambda *_, e=event: events.put(e))
    stack = LocalStack(config)
    try:
        try:
            info = stack.start()
        except (TemplateError, OSError, RuntimeError, TimeoutError) as exc:
            log.error("local stack failed to start: %s", exc)
            return 1
        print(json.dumps(info), flush=True)
        log.info(
            "ready: POST %s (S3 %s, bucket %s, %d instance(s))",
            info["predict_url"],
            info["s3_url"],
            info["bucket"],
            info["instances"],
        )
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
                log.exception("redeploy failed; the previous instances keep serving")
    except KeyboardInterrupt:
        return 0
    finally:
        stack.close()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        log.info("stopped")
