"""Where a number came from: git state, library versions, device. Every probe fails soft."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args], capture_output=True, text=True, timeout=10,
            cwd=Path(__file__).resolve().parent,
        )
        return out.stdout.strip() if out.returncode == 0 else None
    except Exception:
        return None


def _version(module: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(module)
    except Exception:
        return None


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else the machine architecture (``x86_64``)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def usable_cores() -> int | None:
    """The cores this process may run on (its affinity; a container's CPU set), else ``os.cpu_count()``."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count()


def collect(device: Any = None) -> dict[str, Any]:
    """Provenance of this process: git commit/dirty, debench code fingerprint, versions, host, device, time (UTC), peak RSS."""
    info: dict[str, Any] = {
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": None,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "hostname": platform.node(),
        "cpu_model": cpu_model(),  # the machine a CPU run's times belong to (device_name is its architecture)
        "cpu_cores": usable_cores(),
        "date_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    status = _git("status", "--porcelain", "--untracked-files=no")
    info["git_dirty"] = None if status is None else bool(status)
    try:  # the code that ran (debench's files, torch's and MLflow's versions), taken at process start
        from debench.forkserver.client import loaded_code

        info["debench_code"] = loaded_code()
    except Exception:
        info["debench_code"] = None
    try:  # a figure of the process, not the model (debench.train.measure.peak_memory_bytes)
        from debench.train.measure import process_peak_rss_bytes

        info["process_peak_rss_mb"] = process_peak_rss_bytes() / 2**20
    except Exception:
        info["process_peak_rss_mb"] = None
    for mod in ("torch", "torchvision", "torchdiffeq", "torchsde", "mlflow", "numpy"):
        info[f"{mod}_version"] = _version(mod)
    try:
        import torch

        info["cuda_version"] = torch.version.cuda
        info["cudnn_version"] = torch.backends.cudnn.version() if torch.cuda.is_available() else None
        dev = torch.device(device) if device is not None else torch.device("cpu")
        if dev.type == "cuda":
            info["device_name"] = torch.cuda.get_device_name(dev)
        else:
            info["device_name"] = platform.processor() or platform.machine()
        info["torch_threads"] = torch.get_num_threads()
    except Exception:
        pass
    return info
