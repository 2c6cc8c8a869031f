"""SnapStart's snapshot and restore as the emulator plays them, inside the sandbox.

This file belongs to the emulator, like ``aws-lambda-rie``: it is mounted beside it at
``/var/rapid`` and is not part of the image. It imports nothing of ``mnist_lambda``.

``snapshot HANDLER``: the snapshot environment. awslambdaric's own bootstrap initialises the
function and, since ``AWS_LAMBDA_INITIALIZATION_TYPE`` is ``snap-start``, runs the
before-snapshot hooks and calls ``restore_next()``. On Lambda the snapshot is taken during that
call and a restored environment returns from it. Here the call is where this process waits for
restore requests on ``SNAPSTART_SOCKET``: it forks once per request, and the fork returns from
``restore_next()`` in the new environment, so awslambdaric runs the after-restore hooks and then
its invoke loop against that environment's runtime API.

``restore``: the runtime ``aws-lambda-rie`` starts in a restored environment. It asks the
snapshot for a fork, hands over its stdin, stdout and stderr (the environment's logs), and lives
exactly as long as the fork does (a pipe one way, a pidfd the other), so the RIE sees the
restored runtime's life and death as its own child's.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import os
import select
import shutil
import signal
import socket
import sys
import tempfile
import threading
from types import ModuleType

READY_LINE = "SNAPSTART snapshot ready"


def _socket_address() -> str:
    return "\0" + os.environ["SNAPSTART_SOCKET"]  # abstract: reachable from every mount namespace


def _restored(request: dict, fds: list[int]) -> str:
    """In the fork: become the restored environment; return its runtime API address."""
    os.setsid()  # the snapshot's end is not this environment's
    lifeline, *stdio = fds
    for fd, target in zip(stdio, (0, 1, 2), strict=True):
        os.dup2(fd, target)
        os.close(fd)
    for procs in request["cgroup_procs"]:  # the environment's memory limit and CPU share
        with open(procs, "w") as f:
            f.write(str(os.getpid()))

    def exit_with_the_environment() -> None:
        os.read(lifeline, 1)  # EOF: the restore process, so the environment, is gone
        os._exit(0)

    threading.Thread(target=exit_with_the_environment, daemon=True).start()
    os.environ.update(request["environment"])
    return request["environment"]["AWS_LAMBDA_RUNTIME_API"]


def _serve_restores() -> str:
    """Fork a restored environment per request; only a fork returns."""
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps ended environments
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(_socket_address())
    server.listen(64)
    print(READY_LINE, file=sys.stderr, flush=True)
    while True:
        conn, _ = server.accept()
        with conn:
            message, fds, _, _ = socket.recv_fds(conn, 1 << 20, 4)
            pid = os.fork()
            if pid == 0:
                server.close()
                return _restored(json.loads(message), fds)
            for fd in fds:
                os.close(fd)
            conn.sendall(json.dumps({"pid": pid}).encode())


def _load_copy(module: ModuleType) -> ModuleType:
    """A second instance of the C extension ``module``, loaded from a copy of its file.

    awslambdaric's runtime client reads ``AWS_LAMBDA_RUNTIME_API`` once, when its library loads.
    On Lambda every environment's runtime API has the same address; here each RIE has its own,
    so the restored environment loads its own copy of the (unchanged) client.
    """
    folder = tempfile.mkdtemp(prefix="snapstart-")
    path = shutil.copy(module.__file__ or "", folder)
    name = os.path.basename(path).split(".", 1)[0]  # what its PyInit_ function is named after
    loader = importlib.machinery.ExtensionFileLoader(name, path)
    spec = importlib.util.spec_from_file_location(name, path, loader=loader)
    assert spec is not None
    fresh = importlib.util.module_from_spec(spec)
    loader.exec_module(fresh)
    shutil.rmtree(folder)
    return fresh


def snapshot(handler: str) -> None:
    """Initialise the function with awslambdaric, then serve restores."""
    sys.path[0] = os.getcwd()  # the task root, as ``python -m awslambdaric`` has it
    import runtime_client
    from awslambdaric import bootstrap, lambda_runtime_client
    from awslambdaric.lambda_runtime_client import LambdaRuntimeClient, _user_agent

    class SnapshotRuntimeClient(LambdaRuntimeClient):
        def restore_next(self) -> None:
            address = _serve_restores()
            os.environ["AWS_LAMBDA_RUNTIME_API"] = self.lambda_runtime_address = address
            fresh = _load_copy(runtime_client)
            fresh.initialize_client(_user_agent())
            lambda_runtime_client.runtime_client = fresh

    bootstrap.run(handler, SnapshotRuntimeClient(os.environ["AWS_LAMBDA_RUNTIME_API"]))


def restore() -> int:
    """Get a fork of the snapshot for this environment; return when it has ended."""
    lifeline, keep = os.pipe()
    environment = {k: v for k, v in os.environ.items() if not k.startswith("SNAPSTART_")}
    joins = os.environ.get("SNAPSTART_CGROUP_PROCS", "")
    request = {"environment": environment, "cgroup_procs": [p for p in joins.split(":") if p]}
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.connect(_socket_address())
        socket.send_fds(conn, [json.dumps(request).encode()], [lifeline, 0, 1, 2])
        os.close(lifeline)
        pid = json.loads(conn.recv(4096))["pid"]
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))  # closes ``keep``: the fork exits
    pidfd = os.pidfd_open(pid)
    select.select([pidfd], [], [])
    os.close(keep)
    return 1  # the restored runtime exited: so does this environment's runtime


if __name__ == "__main__":
    if sys.argv[1:2] == ["snapshot"]:
        snapshot(sys.argv[2])
    elif sys.argv[1:2] == ["restore"]:
        sys.exit(restore())
    else:
        sys.exit(f"usage: {sys.argv[0]} snapshot HANDLER | restore")
