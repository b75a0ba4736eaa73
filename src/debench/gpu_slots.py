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

Safe by default (:func:`schedule`): a local workflow whose ``runtime.device`` is ``cuda``, or
``auto`` on a host with a GPU, registers the Snakemake resource ``gpu = GPUs x jobs_per_gpu`` itself
and gives every training job ``gpu`` units, so ``snakemake --cores all`` never runs more training
jobs than slots, whatever the core count. With ``jobs_per_gpu > 1`` a model whose measured peak
GPU memory (``peak_memory_mb`` of a GPU row in ``docs/measurements/*.json``, ``debench calibrate
--device cuda``) leaves room for fewer than N copies takes several units, and locks as many slots
of one device. Tests fake the host with ``DEBENCH_GPU_IDS`` and ``DEBENCH_GPU_MEM_MB``.
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
ENV_MEM = "DEBENCH_GPU_MEM_MB"  # memory of each GPU, MiB: how the tests fake a card
HEADROOM = 0.9  # share of a card's memory packed jobs may plan to use together


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
    return [str(i) for i in range(_hardware_count())]


def _hardware_count() -> int:
    """GPUs the driver shows (``nvidia-smi -L``, else ``torch.cuda.device_count()``); 0 without any."""
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30)
            if out.returncode == 0:
                return sum(line.startswith("GPU ") for line in out.stdout.splitlines())
        except (OSError, subprocess.SubprocessError):
            pass
    try:
        import torch

        return torch.cuda.device_count()
    except Exception:  # no torch, or a broken driver: no GPU
        return 0


def visible_gpus() -> list[str]:
    """The GPUs a local workflow schedules training jobs on.

    ``DEBENCH_GPU_IDS`` when set (a user's choice, or a test faking a GPU host); else, on a host
    whose driver shows GPUs, those ``CUDA_VISIBLE_DEVICES`` leaves visible (all without it); else
    none, also when ``CUDA_VISIBLE_DEVICES`` is set on a host without a GPU.
    """
    if os.environ.get(ENV_IDS) is not None:
        return device_ids()
    n = _hardware_count()
    if n == 0:
        return []
    value = os.environ.get("CUDA_VISIBLE_DEVICES")
    if value is not None:
        return [] if value.strip() in ("", "-1", "NoDevFiles") else [d.strip() for d in value.split(",") if d.strip()]
    return [str(i) for i in range(n)]


def gpu_memory_mb() -> float | None:
    """The smallest visible card's memory in MiB (``DEBENCH_GPU_MEM_MB`` in tests); None if unknown."""
    if os.environ.get(ENV_MEM):
        return float(os.environ[ENV_MEM])
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=memory.total", "--format=csv,noheader,nounits"],
                                 capture_output=True, text=True, timeout=30)
            sizes = [float(v) for v in out.stdout.split()] if out.returncode == 0 else []
            if sizes:
                return min(sizes)
        except (OSError, subprocess.SubprocessError, ValueError):
            pass
    return None


def measured_peaks(folder: Path = Path("docs/measurements")) -> dict[str, float]:
    """Each model's largest measured peak GPU memory (MiB) over the GPU rows of ``folder/*.json``."""
    import json

    peaks: dict[str, float] = {}
    for path in sorted(Path(folder).rglob("*.json")) if Path(folder).is_dir() else []:
        try:
            rows = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        for r in rows if isinstance(rows, list) else []:
            if isinstance(r, dict) and r.get("peak_memory_mb") and not str(r.get("device", "")).startswith("CPU"):
                peaks[r["model"]] = max(peaks.get(r["model"], 0.0), float(r["peak_memory_mb"]))
    return peaks


def units_for(jobs_per_gpu: int, gpu_mb: float | None, peak_mb: float | None) -> int:
    """Slots of one GPU a training job takes: 1, or more when its measured peak memory leaves room
    for fewer than ``jobs_per_gpu`` copies (``HEADROOM`` of the card); 1 when either is unknown."""
    if jobs_per_gpu <= 1 or not gpu_mb or not peak_mb:
        return 1
    fit = max(1, min(jobs_per_gpu, int(HEADROOM * gpu_mb // peak_mb)))
    return -(-jobs_per_gpu // fit)


@dataclass
class Schedule:
    """How a local workflow shares this host's GPUs among training jobs (see :func:`schedule`)."""

    gpus: list[str]
    jobs_per_gpu: int
    gpu_mb: float | None
    peaks: dict[str, float]

    @property
    def slots(self) -> int:
        """The Snakemake resource ``gpu``: GPUs x jobs per GPU (0: a CPU run)."""
        return len(self.gpus) * self.jobs_per_gpu

    def units(self, model: str, attempt: int = 1) -> int:
        """Slots one training job of ``model`` takes; a retry (after an out-of-memory) takes a GPU alone."""
        if not self.slots:
            return 0
        if attempt > 1:
            return self.jobs_per_gpu
        return units_for(self.jobs_per_gpu, self.gpu_mb, self.peaks.get(model))

    def describe(self) -> str:
        """The line a user sees when the workflow starts (a dry run too)."""
        if not self.slots:
            return "debench: training on the CPU (no GPU in use); jobs share --cores"
        share = ("one training job per GPU at a time" if self.jobs_per_gpu == 1 else
                 f"up to {self.jobs_per_gpu} training jobs per GPU (runtime.jobs_per_gpu), fewer for a model "
                 f"whose measured peak memory does not fit {self.jobs_per_gpu} times"
                 + (f" in {self.gpu_mb:.0f} MiB" if self.gpu_mb else " (card memory unknown: not limited)")
                 + "; a job that runs out of memory is retried alone")
        return (f"debench: {len(self.gpus)} GPU(s) ({','.join(self.gpus)}): {share}, each on its own device "
                f"(Snakemake resource gpu={self.slots}; runtime.jobs_per_gpu: N packs N)")


def schedule(runtime: dict, local: bool = True, measurements: Path = Path("docs/measurements")) -> Schedule:
    """The GPU schedule of a workflow: none on the CPU, under a cluster executor, or without a GPU.

    Args:
        runtime: the config's ``runtime`` block (``device``, ``jobs_per_gpu``).
        local: whether Snakemake runs the jobs on this host.
        measurements: where measured peak GPU memory is read (``jobs_per_gpu > 1`` only).
    """
    jobs = runtime.get("jobs_per_gpu", 1)
    if not isinstance(jobs, int) or isinstance(jobs, bool) or jobs < 1:
        raise ValueError(f"runtime.jobs_per_gpu must be a positive integer, got {jobs!r}")
    device = str(runtime.get("device", "auto"))
    if not local or device == "cpu" or not (device == "auto" or device.startswith("cuda")):
        return Schedule([], jobs, None, {})
    gpus = visible_gpus()
    if not gpus:
        return Schedule([], jobs, None, {})
    packed = jobs > 1
    return Schedule(gpus, jobs, gpu_memory_mb() if packed else None, measured_peaks(measurements) if packed else {})


def acquire(ids: list[str] | None = None, lock_dir: Path | None = None, poll_s: float = 2.0,
            timeout_s: float | None = None, jobs_per_gpu: int = 1, units: int = 1) -> GpuSlot | None:
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
        units: slots to hold on one device (a model too large to share a GPU ``jobs_per_gpu`` ways).

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
        slot = _take_least_busy(ids, lock_dir, jobs_per_gpu, max(1, min(units, jobs_per_gpu)))
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


def _take_least_busy(ids: list[str], lock_dir: Path, jobs_per_gpu: int, units: int = 1) -> GpuSlot | None:
    """Lock ``units`` free slots of the device with the fewest held slots, or None if none has as many."""
    busy = {d: sum(_held(_lock_path(lock_dir, d, k)) for k in range(jobs_per_gpu)) if jobs_per_gpu > 1 else 0
            for d in ids}
    for device in sorted(ids, key=lambda d: busy[d]):  # stable: lowest id first among equals
        held: list[tuple[Path, int]] = []
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
            held.append((path, fd))
            if len(held) == units:
                for _, extra in held[1:]:
                    _EXTRA_FDS.append(extra)  # held (and released) with the process, like the first
                return GpuSlot(device, *held[0])
        for _, fd in held:  # not enough free slots here: give them back, try the next device
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
    return None


_EXTRA_FDS: list[int] = []
