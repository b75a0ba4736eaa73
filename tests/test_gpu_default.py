"""Issue 26.1: a GPU host runs one training job per GPU by default, faked on the CPU.

``DEBENCH_GPU_IDS`` fakes the host's GPUs (the allocator and the workflow's schedule read it) and
``DEBENCH_GPU_MEM_MB`` a card's memory. The dry run is what a user sees before starting.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

import debench.gpu_slots as gs
from debench.cli import main
from tests.test_workflow import SNAKEMAKE, project_copy
from tests.test_workflow_rerun import MODELS
from tests.test_workflow_rerun import TINY as CPU_TINY

# the rerun tests' tiny two-model config, on a host whose device is decided at run time
TINY = {**CPU_TINY, "runtime": {"device": "auto"}}


def test_schedule_on_faked_hosts(monkeypatch, tmp_path):
    monkeypatch.setenv(gs.ENV_IDS, "0")
    assert gs.schedule({"device": "auto"}).slots == 1
    assert gs.schedule({"device": "cuda", "jobs_per_gpu": 3}).slots == 3
    assert gs.schedule({"device": "cpu"}).slots == 0  # a CPU run is unchanged
    assert gs.schedule({"device": "auto"}, local=False).slots == 0  # a cluster assigns GPUs itself
    monkeypatch.delenv(gs.ENV_IDS)
    monkeypatch.setattr(gs, "_hardware_count", lambda: 0)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")  # set, but no GPU on this host: still the CPU
    assert gs.schedule({"device": "auto"}).slots == 0
    monkeypatch.setattr(gs, "_hardware_count", lambda: 4)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    assert gs.visible_gpus() == ["2", "3"]
    with pytest.raises(ValueError, match="runtime.jobs_per_gpu"):
        gs.schedule({"device": "auto", "jobs_per_gpu": 0})


def test_packed_jobs_are_limited_by_measured_peak_memory(monkeypatch, tmp_path):
    (tmp_path / "cal.json").write_text(json.dumps([
        {"model": "big", "device": "NVIDIA H200", "peak_memory_mb": 30000.0, "median_img_s": 1.0, "loop": "bf16"},
        {"model": "small", "device": "NVIDIA H200", "peak_memory_mb": 500.0, "median_img_s": 1.0, "loop": "bf16"},
        {"model": "cpu_only", "device": "CPU x2 threads", "peak_memory_mb": 90000.0}]))
    monkeypatch.setenv(gs.ENV_IDS, "0,1")
    monkeypatch.setenv(gs.ENV_MEM, "80000")
    s = gs.schedule({"device": "cuda", "jobs_per_gpu": 4}, measurements=tmp_path)
    assert s.slots == 8
    assert s.units("small") == 1 and s.units("unmeasured") == 1 and s.units("cpu_only") == 1
    assert s.units("big") == 2  # 0.9 x 80 GB holds two 30 GB jobs, not four
    assert s.units("small", attempt=2) == 4  # the retry after an out-of-memory runs alone
    assert "each on its own device" in s.describe() and "retried alone" in s.describe()


def test_a_job_of_several_units_holds_them_on_one_device(tmp_path):
    first = gs.acquire(ids=["0", "1"], lock_dir=tmp_path, jobs_per_gpu=2, units=2)
    second = gs.acquire(ids=["0", "1"], lock_dir=tmp_path, jobs_per_gpu=2, units=2)
    assert {first.device, second.device} == {"0", "1"}
    with pytest.raises(TimeoutError):  # all four slots held
        gs.acquire(ids=["0", "1"], lock_dir=tmp_path, jobs_per_gpu=2, units=1, timeout_s=0.2, poll_s=0.05)


def test_out_of_memory_names_model_batch_and_setting(monkeypatch, capsys, tmp_path):
    import torch

    import debench.train.loop

    def oom(spec):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(debench.train.loop, "train", oom)
    spec = {"experiment": "shake_shake", "model": "shake_shake26_2x96d", "protocol": {"batch_size": 128},
            "runtime": {"device": "cpu", "jobs_per_gpu": 4}}
    assert main(["train", "--spec", json.dumps(spec), "--gpu-units", "1"]) == 3
    err = capsys.readouterr().err
    for part in ("out of GPU memory", "shake_shake26_2x96d", "batch size 128", "experiment shake_shake",
                 "runtime.jobs_per_gpu 4", "retries it alone"):
        assert part in err, err


def _dry_run(project: Path, cfg: dict, **env: str) -> str:
    (project / "config" / "tiny.yaml").write_text(yaml.safe_dump(cfg))
    targets = [f"results/tiny/runs/tiny/mnist/{m}/seed{s}/metrics.json" for m in MODELS for s in cfg["seeds"]]
    out = subprocess.run(SNAKEMAKE + [*targets, "-n", "--cores", "16", "--configfile", "config/tiny.yaml"],
                         cwd=project, capture_output=True, text=True, timeout=300, env={**os.environ, **env})
    log = out.stdout + out.stderr
    assert out.returncode == 0, log[-3000:]
    return log


def _train_gpu(log: str) -> dict[str, str]:
    """{model/seed: the gpu resource} of each train job in a dry run."""
    jobs = {}
    for block in re.split(r"\n(?=\[|rule \w+:)", log):
        if "rule train:" in block:
            wc = re.search(r"model=(\w+), seed=(\d+)", block)
            gpu = re.search(r"resources: .*?gpu=(\d+)", block)
            jobs[f"{wc.group(1)}/{wc.group(2)}"] = gpu.group(1) if gpu else None
    return jobs


@pytest.mark.slow
@pytest.mark.e2e
def test_dry_run_on_a_faked_one_gpu_sixteen_core_host(tmp_path):
    project = project_copy(tmp_path)
    log = _dry_run(project, TINY, DEBENCH_GPU_IDS="0")
    assert "debench: 1 GPU(s) (0): one training job per GPU at a time, each on its own device" in log, log
    assert set(_train_gpu(log).values()) == {"1"} and len(_train_gpu(log)) == 4, log
    cpu = _dry_run(project, {**TINY, "runtime": {"device": "cpu"}}, DEBENCH_GPU_IDS="0")
    assert "GPU(s)" not in cpu and set(_train_gpu(cpu).values()) == {"0"}, cpu  # the CPU: unchanged
    (project / "docs" / "measurements").mkdir(parents=True)
    (project / "docs" / "measurements" / "cal.json").write_text(json.dumps(
        [{"model": "rknet_mnist", "device": "NVIDIA H200", "peak_memory_mb": 30000.0}]))
    packed = _dry_run(project, {**TINY, "runtime": {"device": "auto", "jobs_per_gpu": 4}},
                      DEBENCH_GPU_IDS="0", DEBENCH_GPU_MEM_MB="80000")
    assert "up to 4 training jobs per GPU" in packed, packed
    assert _train_gpu(packed) == {"resnet6_mnist/0": "1", "resnet6_mnist/1": "1", "rknet_mnist/0": "2",
                                  "rknet_mnist/1": "2"}, packed
