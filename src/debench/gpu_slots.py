"""One GPU per training job on a multi-GPU host, without a cluster scheduler.

``snakemake --cores 32 --resources gpu=4`` caps the number of concurrent training jobs at four but
does not say which GPU each one takes. Each job calls :func:`acquire` before CUDA starts: it locks
the lowest free slot among the host's devices with ``flock`` on a file in a shared lock folder and
restricts ``CUDA_VISIBLE_DEVICES`` to that device. The lock lives as long as the open file
descriptor, i.e. the training process: it is released on exit, crash or ``kill -9`` alike, so a
dead job never leaves a GPU reserved.

Where the devices come from, first match wins: ``DEBENCH_GPU_IDS`` (``0,1,2,3``; also how the tests
simulate GPUs on a CPU machine), ``CUDA_VISIBLE_DEVICES`` as the user restricted it, ``nvidia-smi -L``,
``torch.cuda.device_count()``. With no device, or inside a SLURM job (SLURM assigns the GPU and sets
``CUDA_VISIBLE_DEVICES`` itself), nothing is locked.

Several jobs per GPU: small CIFAR networks leave a large GPU idle between kernel launches, so
``jobs_per_gpu=N`` (``runtime.jobs_per_gpu`` in the config) gives every device N slots; a job takes
a free slot of the least-occupied device, so jobs spread over the GPUs before they share one. With
``snakemake --resources gpu=<GPUs x N>`` Snakemake starts that many training jobs at once.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("debench.gpu_slots")

ENV_IDS = "DEBENCH_GPU_IDS"
ENV_LOCK_DIR = "DEBENCH_GPU_LOCK_DIR"


@dataclass
class GpuSlot:
    """A held GPU: its device id and the open, locked file that keeps it held."""

    device: str
    path: Path
    fd: int

    def release(self) -> None:
        """Unlock early (the lock also ends with the process)."""
        if self.fd >= 0:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = -1


def default_lock_dir() -> Path:
    """``$DEBENCH_GPU_LOCK_DIR``, else one folder per host under the system temp dir."""
    return Path(os.environ.get(ENV_LOCK_DIR) or Path(tempfile.gettempdir()) / "debench-gpu-slots")


def device_ids() -> list[str]:
    """The GPU ids jobs on this host may take (see the module docstring for the order)."""
    for env in (ENV_IDS, "CUDA_VISIBLE_DEVICES"):
        value = os.environ.get(env)
        if value is not None and value.strip() not in ("", "-1", "NoDevFiles"):
            return [d.strip() for d in value.split(",") if d.strip()]
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30)
            n = sum(line.startswith("GPU ") for line in out.stdout.splitlines())
            if out.returncode == 0:
                return [str(i) for i in range(n)]
        except (OSError, subprocess.SubprocessError):
            pass
    try:
        import torch

        return [str(i) for i in range(torch.cuda.device_count())]
    except Exception:  # no torch, or a broken driver: no GPU
        return []


def acquire(ids: list[str] | None = None, lock_dir: Path | None = None, poll_s: float = 2.0,
            timeout_s: float | None = None, jobs_per_gpu: int = 1) -> GpuSlot | None:
    """Hold the lowest free GPU and make it the only visible one for this process.

    Call it before anything initialises CUDA. Waits while every slot is held (another workflow on
    the host may hold some), polling every ``poll_s`` seconds.

    Args:
        ids: device ids; default :func:`device_ids`.
        lock_dir: folder of the lock files shared by every job on the host; default
            :func:`default_lock_dir`.
        poll_s: seconds between tries while all slots are held.
        timeout_s: give up after this long (None: wait as long as it takes).
        jobs_per_gpu: slots per device; a job takes a free slot on the device with the fewest
            held slots (lowest id first among equals).

    Returns:
        The held slot (keep a reference for the job's lifetime), or None when there is no GPU or
        SLURM already assigned one.

    Raises:
        TimeoutError: every slot stayed held for ``timeout_s`` seconds.
        ValueError: ``jobs_per_gpu`` is not a positive integer.
    """
    if not isinstance(jobs_per_gpu, int) or isinstance(jobs_per_gpu, bool) or jobs_per_gpu < 1:
        raise ValueError(f"runtime.jobs_per_gpu must be a positive integer, got {jobs_per_gpu!r}")
    if ids is None:
        if os.environ.get("SLURM_JOB_ID") and os.environ.get(ENV_IDS) is None:
            return None  # the scheduler bound this job to its GPUs
        ids = device_ids()
    if not ids:
        return None
    lock_dir = Path(lock_dir or default_lock_dir())
    lock_dir.mkdir(parents=True, exist_ok=True)
    start, waited = time.monotonic(), False
    while True:
        slot = _take_least_busy(ids, lock_dir, jobs_per_gpu)
        if slot is not None:
            os.environ["CUDA_VISIBLE_DEVICES"] = slot.device
            log.info("GPU slot %s of %s held (lock %s)", slot.device, ",".join(ids), slot.path)
            return slot
        if timeout_s is not None and time.monotonic() - start > timeout_s:
            raise TimeoutError(f"all GPU slots {','.join(ids)} stayed held for {timeout_s} s ({lock_dir})")
        if not waited:
            log.info("all GPU slots %s are held; waiting for one (%s)", ",".join(ids), lock_dir)
            waited = True
        time.sleep(poll_s)


def _lock_path(lock_dir: Path, device: str, k: int) -> Path:
    # slot 0 keeps the one-job-per-GPU file name, so a mixed-setting host still excludes itself
    return lock_dir / (f"gpu{device}.lock" if k == 0 else f"gpu{device}.{k}.lock")


def _held(path: Path) -> bool:
    """Whether another process holds the lock file at ``path`` (probed without keeping it)."""
    if not path.exists():
        return False
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops a lock this probe took
    return False


def _take_least_busy(ids: list[str], lock_dir: Path, jobs_per_gpu: int) -> GpuSlot | None:
    """Lock one free slot on the device with the fewest held slots, or None if all are held."""
    busy = {d: sum(_held(_lock_path(lock_dir, d, k)) for k in range(jobs_per_gpu)) if jobs_per_gpu > 1 else 0
            for d in ids}
    for device in sorted(ids, key=lambda d: busy[d]):  # stable: lowest id first among equals
        for k in range(jobs_per_gpu):
            path = _lock_path(lock_dir, device, k)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())  # who holds it, for a human looking
            return GpuSlot(device, path, fd)
    return None
