"""GPU slots on one host, simulated on the CPU: concurrent jobs never share a device id."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import debench.gpu_slots
from debench.gpu_slots import acquire, device_ids

# the jobs import the module alone: importing the debench package would import torch (seconds each)
IMPORT = f"import sys; sys.path.insert(0, {str(Path(debench.gpu_slots.__file__).parent)!r}); "
# a job: take a slot, note the device and the time it was held, hold it a while, exit
JOB = IMPORT + """
import json, time
from gpu_slots import acquire
slot = acquire(poll_s=0.05)
t0 = time.time()
time.sleep(float(sys.argv[2]))
import os
print(json.dumps({"gpu": os.environ["CUDA_VISIBLE_DEVICES"], "start": t0, "end": time.time()}))
"""


def _intervals_overlap(a: dict, b: dict) -> bool:
    return a["start"] < b["end"] and b["start"] < a["end"]


@pytest.mark.parametrize("n_jobs", [4, 8])
def test_concurrent_jobs_hold_distinct_gpus(tmp_path, n_jobs):
    env = {**os.environ, "DEBENCH_GPU_IDS": "0,1,2,3", "DEBENCH_GPU_LOCK_DIR": str(tmp_path / "locks")}
    env.pop("SLURM_JOB_ID", None)
    procs = [subprocess.Popen([sys.executable, "-c", JOB, str(i), "1.0"], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(n_jobs)]
    held = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err[-2000:]
        held.append(json.loads(out.strip().splitlines()[-1]))
    assert {h["gpu"] for h in held} <= {"0", "1", "2", "3"}
    if n_jobs <= 4:
        assert len({h["gpu"] for h in held}) == n_jobs  # enough GPUs: every job its own at once
    for i, a in enumerate(held):
        for b in held[i + 1:]:
            assert not (a["gpu"] == b["gpu"] and _intervals_overlap(a, b)), (a, b)


def test_lowest_free_slot_and_release_on_crash(tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # acquire sets it; restored afterwards
    locks = tmp_path / "locks"
    first = acquire(ids=["0", "1"], lock_dir=locks)
    assert first.device == "0" and os.environ["CUDA_VISIBLE_DEVICES"] == "0"
    # a process that takes slot 1 and is killed -9 while holding it
    holder = subprocess.Popen([sys.executable, "-c", IMPORT + "import time; from gpu_slots import acquire;"
                               f"s = acquire(ids=['0', '1'], lock_dir={str(locks)!r}); print(s.device, flush=True);"
                               "time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "1"
    with pytest.raises(TimeoutError):
        acquire(ids=["0", "1"], lock_dir=locks, poll_s=0.05, timeout_s=0.3)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait(timeout=30)
    assert acquire(ids=["0", "1"], lock_dir=locks, poll_s=0.05, timeout_s=5).device == "1"
    first.release()
    assert acquire(ids=["0", "1"], lock_dir=locks, timeout_s=0).device == "0"


def test_device_ids_sources(monkeypatch):
    monkeypatch.setenv("DEBENCH_GPU_IDS", "2,5")
    assert device_ids() == ["2", "5"]
    monkeypatch.delenv("DEBENCH_GPU_IDS")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    assert device_ids() == ["3"]


def test_no_slot_inside_slurm_or_without_gpus(tmp_path, monkeypatch):
    monkeypatch.delenv("DEBENCH_GPU_IDS", raising=False)
    monkeypatch.setenv("SLURM_JOB_ID", "42")
    assert acquire(lock_dir=tmp_path) is None
    assert acquire(ids=[], lock_dir=tmp_path) is None


def test_train_command_holds_a_slot_for_the_run(tmp_path, monkeypatch):
    """`debench train --gpu-slots auto` locks before training and leaves CPU runs alone."""
    from debench.cli import _hold_gpu_slot

    monkeypatch.setenv("DEBENCH_GPU_IDS", "7")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert _hold_gpu_slot({"runtime": {"device": "cpu"}}, "auto", str(tmp_path)) is None
    assert _hold_gpu_slot({"runtime": {"device": "auto"}}, "off", str(tmp_path)) is None
    slot = _hold_gpu_slot({"runtime": {"device": "auto"}}, "auto", str(tmp_path))
    assert slot.device == "7" and os.environ["CUDA_VISIBLE_DEVICES"] == "7"
    assert Path(slot.path).read_text().strip() == str(os.getpid())
    start = time.monotonic()
    with pytest.raises(TimeoutError):
        acquire(lock_dir=tmp_path, poll_s=0.05, timeout_s=0.2)  # same lock folder: GPU 7 is held
    assert time.monotonic() - start < 5
    slot.release()


def test_several_jobs_per_gpu_spread_over_devices_then_share(tmp_path, monkeypatch):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    kw = {"ids": ["0", "1"], "lock_dir": tmp_path, "poll_s": 0.01, "jobs_per_gpu": 2}
    slots = [acquire(**kw) for _ in range(4)]
    assert [s.device for s in slots] == ["0", "1", "0", "1"]  # least-occupied device first
    assert len({s.path for s in slots}) == 4
    with pytest.raises(TimeoutError):
        acquire(**kw, timeout_s=0.05)  # 2 GPUs x 2 slots are all held
    slots[1].release()
    again = acquire(**kw, timeout_s=1.0)
    assert again.device == "1"
    for s in slots + [again]:
        s.release()


def test_one_job_per_gpu_keeps_the_old_lock_names_and_bad_counts_are_refused(tmp_path, monkeypatch):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    slot = acquire(ids=["3"], lock_dir=tmp_path, poll_s=0.01)
    assert slot.path.name == "gpu3.lock"
    # a job with jobs_per_gpu=2 on the same host sees slot 0 of GPU 3 as taken and takes slot 1
    other = acquire(ids=["3"], lock_dir=tmp_path, poll_s=0.01, jobs_per_gpu=2, timeout_s=1.0)
    assert other.path.name == "gpu3.1.lock"
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="jobs_per_gpu"):
            acquire(ids=["3"], lock_dir=tmp_path, jobs_per_gpu=bad)
    slot.release()
    other.release()


def test_jobs_per_gpu_changes_no_run_identity():
    """Packing jobs onto a GPU must not make Snakemake retrain finished runs (config.run_identity)."""
    import copy

    from debench.config import load_config, run_identity
    from tests.conftest import ROOT

    config = load_config(ROOT / "config" / "smoke.yaml")
    packed = copy.deepcopy(config)
    packed["runtime"]["jobs_per_gpu"] = 4
    assert run_identity(packed, "smoke_discrete", "cifar10", "resnet20", 0) == \
        run_identity(config, "smoke_discrete", "cifar10", "resnet20", 0)
    packed["runtime"]["amp"] = "bf16"  # a setting that does change the numbers still counts
    assert run_identity(packed, "smoke_discrete", "cifar10", "resnet20", 0) != \
        run_identity(config, "smoke_discrete", "cifar10", "resnet20", 0)
