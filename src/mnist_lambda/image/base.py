"""The Dockerfile's base image: AWS's ``public.ecr.aws/lambda/python`` or a labelled stand-in.

:func:`ensure_base` uses the real image when it is present or can be pulled. Where it cannot
(no route to the registry, as on a machine that reaches only package registries), it builds a
stand-in from files on this machine and ``docker import``\\ s it under the very same tag, so the
Dockerfile builds unchanged. The stand-in has the layout and start-up chain of the real image:

- ``/var/lang``: this machine's CPython of the Dockerfile's version (script shebangs rewritten),
  with pip, minus its test suite, IDLE and Tk;
- ``/usr/lib64`` (``/lib64`` points there): the shared libraries that ``ldd`` names for that
  interpreter, its extension modules and the runtime client, plus the ones a manylinux wheel
  (onnxruntime, say) may expect from the system: glibc's and its stubs (``libdl``,
  ``libpthread``...), ``libgcc_s`` and ``libstdc++``;
- ``/usr/bin``: Debian's static busybox, one link per applet (``/bin`` points there);
- ``/var/runtime``: ``awslambdaric`` at the lock's version (the same folder the local stack
  mounts there) and a ``bootstrap`` that starts it as AWS's does;
- ``/usr/local/bin/aws-lambda-rie``: the Runtime Interface Emulator from the SAM CLI wheel, and
  ``/lambda-entrypoint.sh``, which runs it when ``AWS_LAMBDA_RUNTIME_API`` is unset;
- ``/etc``: ``passwd`` and ``group`` with a non-root user, and this machine's CA bundle at
  Amazon Linux's path, which pip in the build uses (``PIP_CERT``) to reach the package index.

It carries the labels ``mnist-lambda.stand-in=true`` and ``mnist-lambda.inputs=<digest of what
it was built from>``: a stand-in whose inputs changed is built again; a real image (no such
label) is never replaced.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from mnist_lambda.image import docker_engine
from mnist_lambda.local_stack import task_root

REPOSITORY = "public.ecr.aws/lambda/python"
STAND_IN_LABEL = "mnist-lambda.stand-in"
INPUTS_LABEL = "mnist-lambda.inputs"
BUILDER_VERSION = "2"  # bump when the stand-in's layout changes
BUSYBOX = Path("/bin/busybox")  # Debian's busybox-static
CA_BUNDLE_SOURCES = ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt")
IMAGE_CA_BUNDLE = "etc/pki/tls/certs/ca-bundle.crt"
# What a manylinux wheel may take from the system (the manylinux policy's core libraries; the
# X11, GL and GLib ones left out): glibc's, with its compatibility stubs, and the C++ runtime.
SYSTEM_LIBS = (
    "libc.so.6",
    "libm.so.6",
    "libdl.so.2",
    "librt.so.1",
    "libpthread.so.0",
    "libutil.so.1",
    "libresolv.so.2",
    "libnsl.so.1",
    "libgcc_s.so.1",
    "libstdc++.so.6",
)
SKIPPED_STDLIB = ("test", "idlelib", "tkinter", "turtledemo", "ensurepip", "lib2to3")
LAMBDA_USER = "sbx_user1051"  # the user Lambda runs functions as
ENTRYPOINT_SH = """#!/bin/sh
# As AWS's base image: the handler is the one argument; the RIE when no Runtime API is given.
if [ $# -ne 1 ]; then
  echo "entrypoint requires the handler name to be the first argument" 1>&2
  exit 142
fi
export _HANDLER="$1"

RUNTIME_ENTRYPOINT=/var/runtime/bootstrap
if [ -z "${AWS_LAMBDA_RUNTIME_API}" ]; then
  exec /usr/local/bin/aws-lambda-rie $RUNTIME_ENTRYPOINT
else
  exec $RUNTIME_ENTRYPOINT
fi
"""
BOOTSTRAP_SH = """#!/bin/sh
# The runtime interface client on the image's Python, as the local stack starts it.
export AWS_EXECUTION_ENV=AWS_Lambda_python{version}
export PYTHONPATH=/var/runtime
exec /var/lang/bin/python{version} -m awslambdaric "$_HANDLER"
"""


class BaseImageError(RuntimeError):
    """The base image can be neither pulled nor built here; the message says why."""


@dataclass(frozen=True)
class BaseImage:
    """The image the Dockerfile's ``FROM`` names, as found or made."""

    tag: str
    stand_in: bool
    action: str  # "found", "pulled", "built" or "rebuilt"

    def describe(self) -> str:
        kind = "a STAND-IN built from this machine's files" if self.stand_in else "AWS's image"
        return f"base image {self.tag}: {kind} ({self.action})"


def base_tag(python_version: str | None = None) -> str:
    """``public.ecr.aws/lambda/python:<the Dockerfile's PYTHON_VERSION>``."""
    return f"{REPOSITORY}:{python_version or task_root.read_dockerfile().python_version}"


def rie_binary() -> Path:
    """The ``aws-lambda-rie`` binary that the SAM CLI wheel ships for this machine."""
    import samcli  # the wheel holds the binary; imported only to find its folder

    arch = {"aarch64": "arm64", "arm64": "arm64"}.get(os.uname().machine, "x86_64")
    path = Path(samcli.__file__).parent / "local" / "rapid" / f"aws-lambda-rie-{arch}"
    if not path.is_file():
        raise BaseImageError(f"the SAM CLI wheel has no {path.name} (looked in {path.parent})")
    return path


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _ca_bundle() -> Path:
    for name in CA_BUNDLE_SOURCES:
        if Path(name).is_file():
            return Path(name)
    raise BaseImageError(f"no CA bundle on this machine ({', '.join(CA_BUNDLE_SOURCES)})")


@dataclass(frozen=True)
class StandInInputs:
    """Everything the stand-in is made of; its digest names a build."""

    python: task_root.Python
    full_version: str
    runtime_dir: Path
    rie: Path
    busybox: Path
    ca_bundle: Path

    def digest(self) -> str:
        parts = [
            BUILDER_VERSION,
            self.python.prefix,
            self.full_version,
            self.runtime_dir.name,  # named after the runtime client's pins
            _sha256(self.rie),
            _sha256(self.busybox),
            _sha256(self.ca_bundle),
            ENTRYPOINT_SH,
            BOOTSTRAP_SH,
        ]
        return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]


def stand_in_inputs(python_version: str) -> StandInInputs:
    """This machine's files for a stand-in of the ``python_version`` image, or why not."""
    python = task_root.find_python(python_version)
    if python is None:
        raise BaseImageError(
            f"the stand-in needs CPython {python_version} on this machine (pyenv, "
            f"python{python_version} on PATH, or $LAMBDA_PYTHON), and there is none"
        )
    if not BUSYBOX.is_file():
        raise BaseImageError(f"the stand-in needs {BUSYBOX}: `apt-get install busybox-static`")
    full = subprocess.run(
        [python.executable, "-S", "-c", "import platform; print(platform.python_version())"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    runtime = task_root.build(None).runtime_dir
    return StandInInputs(python, full, runtime, rie_binary(), BUSYBOX, _ca_bundle())


def _shared_libraries(binaries: list[Path]) -> set[Path]:
    """Every library ``ldd`` resolves for ``binaries`` (real files), the loader included."""
    found: set[Path] = set()
    for chunk in range(0, len(binaries), 200):
        done = subprocess.run(
            ["ldd", *map(str, binaries[chunk : chunk + 200])], capture_output=True, text=True
        )
        for line in done.stdout.splitlines():
            match = re.search(r"(?:=>\s*)?(/\S+)\s+\(0x", line)
            if match:
                found.add(Path(match.group(1)))
    return found


def _system_library(name: str) -> Path | None:
    """Where this machine's dynamic linker finds the 64-bit ``name`` (``ldconfig -p``), if any."""
    done = subprocess.run(["/sbin/ldconfig", "-p"], capture_output=True, text=True)
    for line in done.stdout.splitlines():
        head, _, path = line.partition("=>")
        if head.split() and head.split()[0] == name and "64" in head:
            return Path(path.strip())
    return None


class _RootFs:
    """A tar stream of the stand-in's file system, every entry owned by root."""

    def __init__(self, tar: tarfile.TarFile) -> None:
        self.tar = tar
        self.dirs: set[str] = set()

    @staticmethod
    def _info(name: str, kind: bytes, mode: int, size: int = 0) -> tarfile.TarInfo:
        info = tarfile.TarInfo(name)
        info.type, info.mode, info.size, info.uid, info.gid = kind, mode, size, 0, 0
        return info

    def mkdir(self, name: str, mode: int = 0o755) -> None:
        parts = [p for p in name.strip("/").split("/") if p not in ("", ".")]
        for i in range(1, len(parts) + 1):
            path = "/".join(parts[:i])
            if path not in self.dirs:
                self.dirs.add(path)
                last = mode if i == len(parts) else 0o755
                self.tar.addfile(self._info(path, tarfile.DIRTYPE, last))

    def data(self, name: str, data: bytes, mode: int = 0o644) -> None:
        self.mkdir(os.path.dirname(name))
        self.tar.addfile(self._info(name, tarfile.REGTYPE, mode, len(data)), io.BytesIO(data))

    def file(self, name: str, source: Path, mode: int | None = None) -> None:
        self.mkdir(os.path.dirname(name))
        stat = source.stat()
        info = self._info(name, tarfile.REGTYPE, mode or (stat.st_mode & 0o7777), stat.st_size)
        with source.open("rb") as fh:
            self.tar.addfile(info, fh)

    def symlink(self, name: str, target: str) -> None:
        self.mkdir(os.path.dirname(name))
        info = self._info(name, tarfile.SYMTYPE, 0o777)
        info.linkname = target
        self.tar.addfile(info)

    def tree(self, dest: str, source: Path, skip: frozenset[str] = frozenset()) -> list[Path]:
        """Copy ``source`` to ``dest``, symlinks kept, less the relative paths in ``skip``;
        return the ELF files copied."""
        elves: list[Path] = []
        for folder, dirnames, filenames in os.walk(source):
            rel = Path(folder).relative_to(source)
            dirnames[:] = sorted(d for d in dirnames if (rel / d).as_posix() not in skip)
            links = [d for d in dirnames if Path(folder, d).is_symlink()]
            self.mkdir(f"{dest}/{rel.as_posix()}")
            for name in sorted(filenames + links):
                path, target = Path(folder, name), f"{dest}/{(rel / name).as_posix()}"
                if (rel / name).as_posix() in skip:
                    continue
                if path.is_symlink():
                    self.symlink(target, os.readlink(path))
                    continue
                self.file(target, path)
                with path.open("rb") as fh:
                    if fh.read(4) == b"\x7fELF":
                        elves.append(path)
        return elves


def _lang_bin(rootfs: _RootFs, python: task_root.Python) -> None:
    """``/var/lang/bin``: the interpreter, and pip's scripts with their shebangs rewritten."""
    bin_dir = Path(python.prefix) / "bin"
    exe, version = Path(python.executable).name, python.version
    for path in sorted(bin_dir.iterdir()):
        dev_tool = path.name.startswith(("idle", "2to3", f"python{version}-gdb"))
        if dev_tool or "-config" in path.name:
            continue
        if path.is_symlink():
            rootfs.symlink(f"var/lang/bin/{path.name}", os.readlink(path))
            continue
        data = path.read_bytes()
        if data.startswith(b"#!"):
            first, _, rest = data.partition(b"\n")
            data = f"#!/var/lang/bin/{exe}".encode() + b"\n" + rest if b"python" in first else data
        rootfs.data(f"var/lang/bin/{path.name}", data, 0o755)
    aliases = {"python": exe, "python3": exe, "pip": f"pip{version}", "pip3": f"pip{version}"}
    for alias, target in aliases.items():  # as the real image's PATH offers them
        if not (bin_dir / alias).exists():
            rootfs.symlink(f"var/lang/bin/{alias}", target)


def write_stand_in(fileobj: IO[bytes], inputs: StandInInputs) -> None:
    """The stand-in's root file system as a tar stream into ``fileobj``."""
    with tarfile.open(fileobj=fileobj, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        _write_root(_RootFs(tar), inputs)


def _write_root(rootfs: _RootFs, inputs: StandInInputs) -> None:
    python, version = inputs.python, inputs.python.version
    for name in ("bin", "lib64", "sbin"):
        rootfs.symlink(name, f"usr/{name}")
    rootfs.symlink("lib", "usr/lib")
    rootfs.mkdir("tmp", 0o1777)
    for name in ("var/task", "opt", "proc", "sys", "dev", "etc", "root", "home", "usr/local/bin"):
        rootfs.mkdir(name)
    for name in ("usr/sbin", "usr/lib"):
        rootfs.mkdir(name)
    rootfs.file("usr/bin/busybox", inputs.busybox, 0o755)
    applets = subprocess.run(
        [str(inputs.busybox), "--list"], capture_output=True, text=True, check=True
    ).stdout.split()
    for applet in sorted(set(applets) - {"busybox"}):
        rootfs.symlink(f"usr/bin/{applet}", "busybox")

    prefix = Path(python.prefix)
    stdlib = prefix / "lib" / f"python{version}"
    skipped = [stdlib / name for name in SKIPPED_STDLIB] + list(stdlib.glob("config-*"))
    skipped += [p for p in (stdlib / "site-packages").iterdir() if "pip" not in p.name]
    skipped += [prefix / "lib" / "pkgconfig"]
    skip = frozenset(p.relative_to(prefix / "lib").as_posix() for p in skipped)
    elves = rootfs.tree("var/lang/lib", prefix / "lib", skip=skip)
    rootfs.mkdir("var/lang/include")
    _lang_bin(rootfs, python)
    elves += [Path(python.executable), inputs.busybox]  # busybox: static, ldd names nothing
    elves += rootfs.tree("var/runtime", inputs.runtime_dir)
    libraries = _shared_libraries(elves) | set(filter(None, map(_system_library, SYSTEM_LIBS)))
    for library in sorted(libraries):
        if str(library).startswith(str(prefix)):
            continue  # libpython: already under /var/lang/lib
        rootfs.file(f"usr/lib64/{library.name}", library.resolve(), 0o755)
    rootfs.data("var/runtime/bootstrap", BOOTSTRAP_SH.format(version=version).encode(), 0o755)
    rootfs.data("lambda-entrypoint.sh", ENTRYPOINT_SH.encode(), 0o755)
    rootfs.file("usr/local/bin/aws-lambda-rie", inputs.rie, 0o755)
    rootfs.file(IMAGE_CA_BUNDLE, inputs.ca_bundle, 0o644)
    rootfs.data(
        "etc/passwd",
        f"root:x:0:0:root:/root:/bin/sh\n{LAMBDA_USER}:x:993:990::/home/{LAMBDA_USER}:/sbin/nologin\n"
        "nobody:x:65534:65534:nobody:/:/sbin/nologin\n".encode(),
    )
    rootfs.data("etc/group", b"root:x:0:\nsbx_user:x:990:\nnobody:x:65534:\n")
    rootfs.data("etc/nsswitch.conf", b"passwd: files\ngroup: files\nhosts: files dns\n")
    rootfs.data("etc/os-release", b'NAME="mnist-lambda stand-in for the AWS Lambda base image"\n')


def _changes(inputs: StandInInputs) -> list[str]:
    """The image configuration AWS's image has (``docker import --change``)."""
    env = {
        "LANG": "en_US.UTF-8",
        "TZ": ":/etc/localtime",
        "PATH": "/var/lang/bin:/usr/local/bin:/usr/bin/:/bin:/opt/bin",
        "LD_LIBRARY_PATH": (
            "/var/lang/lib:/lib64:/usr/lib64:/var/runtime:/var/runtime/lib:/var/task:"
            "/var/task/lib:/opt/lib"
        ),
        "LAMBDA_TASK_ROOT": "/var/task",
        "LAMBDA_RUNTIME_DIR": "/var/runtime",
        "PIP_CERT": f"/{IMAGE_CA_BUNDLE}",  # the stand-in's one addition: pip trusts this CA
    }
    changes = [f"ENV {key}={value}" for key, value in env.items()]
    changes += ["WORKDIR /var/task", 'ENTRYPOINT ["/lambda-entrypoint.sh"]']
    changes += [f"LABEL {STAND_IN_LABEL}=true", f"LABEL {INPUTS_LABEL}={inputs.digest()}"]
    return changes


def build_stand_in(tag: str, inputs: StandInInputs) -> None:
    """``docker import`` the stand-in under ``tag``."""
    with tempfile.TemporaryFile() as tmp:
        write_stand_in(tmp, inputs)
        tmp.seek(0)
        args = ["import"] + [a for c in _changes(inputs) for a in ("--change", c)]
        done = subprocess.run(["docker", *args, "-", tag], stdin=tmp, capture_output=True)
    if done.returncode != 0:
        raise BaseImageError(f"docker import failed: {done.stderr.decode().strip()}")


def _pull(tag: str) -> bool:
    done = subprocess.run(["docker", "pull", "--quiet", tag], capture_output=True, timeout=300)
    return done.returncode == 0


def base_problem() -> tuple[str, str] | None:
    """None when the base image is here or a stand-in can be built; else (what, what to do)."""
    version = task_root.read_dockerfile().python_version
    labels = docker_engine.image_labels(base_tag(version))
    if labels is not None and labels.get(STAND_IN_LABEL) != "true":
        return None
    try:
        stand_in_inputs(version)
    except (BaseImageError, task_root.TaskRootError) as exc:
        return f"{base_tag(version)} is not here and no stand-in can be built", str(exc)
    return None


def ensure_base(pull: bool = True, force: bool = False) -> BaseImage:
    """The Dockerfile's base image, present locally: found, pulled, or a stand-in built."""
    if (problem := docker_engine.engine_problem()) is not None:
        raise BaseImageError(problem)
    version = task_root.read_dockerfile().python_version
    tag = base_tag(version)
    labels = docker_engine.image_labels(tag)
    if labels is not None and labels.get(STAND_IN_LABEL) != "true" and not force:
        return BaseImage(tag, False, "found")
    if labels is None and pull and _pull(tag):
        return BaseImage(tag, False, "pulled")
    inputs = stand_in_inputs(version)
    if labels is not None and labels.get(INPUTS_LABEL) == inputs.digest() and not force:
        return BaseImage(tag, True, "found")
    build_stand_in(tag, inputs)
    return BaseImage(tag, True, "rebuilt" if labels is not None else "built")
