"""Facts about the machine and the function processes: CPU, peak memory, matmul rate."""

from __future__ import annotations

import contextlib
import math
import os
import platform
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from mnist_lambda import local_stack


def machine() -> dict[str, Any]:
    """CPU model, cores, memory, Python and numpy BLAS, for the report."""
    model = platform.processor() or ""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        found = re.search(r"^Model name:\s*(.+)$", out, re.M)
        model = found[1].strip() if found else model
    mem_kb = 0
    with contextlib.suppress(OSError, ValueError):
        text = Path("/proc/meminfo").read_text()
        mem_kb = int(re.search(r"MemTotal:\s+(\d+)", text)[1])  # type: ignore[index]
    return {
        "cpu_model": model,
        "cores": os.cpu_count(),
        "memory_gb": round(mem_kb / 1024**2, 1),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "date_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "kernel": platform.release(),
    }


def child_pids(pid: int) -> list[int]:
    """Direct children of ``pid``."""
    with contextlib.suppress(psutil.Error):
        return sorted(child.pid for child in psutil.Process(pid).children())
    return []


def vm_hwm_mb(pid: int) -> float | None:
    """Peak resident set (VmHWM) of ``pid`` in MB, from /proc/<pid>/status."""
    with contextlib.suppress(OSError, TypeError):
        found = re.search(r"^VmHWM:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text(), re.M)
        return int(found[1]) / 1024 if found else None
    return None


def function_peak_mb(state_dir: Path) -> float | None:
    """VmHWM of the runtime (the awslambdaric python) under each RIE of the stack; the max."""
    info = local_stack.read(state_dir)
    if info is None:
        return None
    peaks = [
        mb
        for rie in info.emulator_pids
        for child in child_pids(rie)
        if (mb := vm_hwm_mb(child)) is not None
    ]
    return max(peaks) if peaks else None


def sgemm_gflops(m: int, k: int, n: int, repeats: int = 5) -> float:
    """Best float32 ``(m, k) @ (k, n)`` rate of numpy's BLAS on this machine, in GFLOP/s."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((m, k), dtype=np.float32)
    b = rng.standard_normal((k, n), dtype=np.float32)
    a @ b  # warm up (threads, pages)
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2.0 * m * k * n / best / 1e9
