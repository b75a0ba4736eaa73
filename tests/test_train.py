"""The training loop: metrics schema, protocol checks, schedules, resume, divergence."""

from __future__ import annotations

import json
import math
import os
import platform
from pathlib import Path

import pytest


from debench.train.loop import train
from debench.train.protocol import Protocol, lr_at
from tests.conftest import make_spec
from tests.nan_model import NaNAfter  # noqa: F401  (registers test_nan_after)

REQUIRED = {
    "schema_version", "experiment", "model", "dataset", "seed", "config_hash", "status", "params",
    "test_accuracy", "test_error", "best_test_accuracy", "final_test_error", "train_time_s",
    "epoch_time_s", "throughput_img_s", "peak_memory_mb", "activation_memory_mb", "provenance",
    "protocol", "runtime", "family", "paper", "scheme", "metric", "evals_per_forward",
}


def test_metrics_schema_and_epoch_log(tmp_path, synthetic_cache):
    rec = train(make_spec(tmp_path, synthetic_cache))
    on_disk = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert on_disk == json.loads(json.dumps(rec))
    assert REQUIRED <= set(rec)
    assert rec["status"] == "ok" and rec["params"] == 269722 and rec["evals_per_forward"] == 9
    assert math.isclose(rec["test_error"], 100 - rec["test_accuracy"])
    assert rec["nfe_forward"] is None and rec["nfe_backward"] is None  # no solver in a ResNet
    assert rec["activation_memory_mb"] > 1 and rec["runtime"]["threads"] == 1
    assert {"git_commit", "torch_version", "device_name"} <= set(rec["provenance"])
    # the machine a CPU run's times belong to: the CPU model (device_name is only the architecture) and cores
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next((ln.split(":", 1)[1].strip() for ln in cpuinfo.splitlines() if ln.startswith("model name")), None)
    assert rec["provenance"]["cpu_model"] == (model or platform.machine())
    assert rec["provenance"]["cpu_cores"] == len(os.sched_getaffinity(0))
    lines = (tmp_path / "run" / "epochs.csv").read_text().splitlines()
    assert lines[0].startswith("epoch,step,lr,train_loss") and len(lines) == 3
    assert rec["test_accuracy"] > 20  # synthetic data: well above the 10% of chance after 16 steps


@pytest.mark.parametrize("model,extra", [
    ("resnet20", {}),
    ("stochastic_depth_resnet20", {}),   # Python's RNG drives the dropped blocks
    ("resnet20", {"ema": 0.9}),          # the weight average is checkpointed too
])
def test_resume_after_interruption_gives_identical_metrics(tmp_path, synthetic_cache, model, extra):
    proto = {"epochs": 3, **extra}
    full = train(make_spec(tmp_path / "a", synthetic_cache, model=model, protocol=proto))
    spec = make_spec(tmp_path / "b", synthetic_cache, model=model, protocol=proto)
    first = make_spec(tmp_path / "b", synthetic_cache, model=model, protocol=proto)
    import debench.train.loop as loop

    calls = {"n": 0}
    real = loop.ckpt.save_checkpoint

    def save_then_die(*args, **kwargs):
        real(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # what a kill after the epoch-2 checkpoint leaves behind

    loop.ckpt.save_checkpoint = save_then_die
    try:
        with pytest.raises(KeyboardInterrupt):
            train(first)
    finally:
        loop.ckpt.save_checkpoint = real
    assert not (tmp_path / "b" / "run" / "metrics.json").exists()
    resumed = train(spec)
    for key in ("test_accuracy", "test_loss", "train_loss", "final_test_error", "steps"):
        assert resumed[key] == full[key], key
    assert resumed["epochs_completed"] == 3


def test_nan_loss_ends_with_status_diverged(tmp_path, synthetic_cache):
    rec = train(make_spec(tmp_path, synthetic_cache, model="test_nan_after", model_args={"after": 5}))
    assert rec["status"] == "diverged"
    assert rec["failed_epoch"] == 1 and "epoch 1" in rec["status_detail"]
    assert "test_accuracy" not in rec


def test_changed_settings_never_resume_old_checkpoints(tmp_path, synthetic_cache, monkeypatch):
    import debench.train.checkpoint as ckpt

    loaded, real = [], ckpt.load_latest
    monkeypatch.setattr(ckpt, "load_latest", lambda *a, **k: loaded.append(real(*a, **k)) or loaded[-1])
    a = train(make_spec(tmp_path, synthetic_cache))
    b = train(make_spec(tmp_path, synthetic_cache, protocol={"lr": 0.03}))
    assert loaded == [None, None], "the run with lr 0.03 resumed the lr 0.02 run's checkpoint"
    assert a["config_hash"] != b["config_hash"] and b["resumed_from_epoch"] == 0
    assert b["epochs_completed"] == 2 and b["train_loss"] != a["train_loss"]  # it trained, with its own lr


@pytest.mark.parametrize("bad,message", [
    ({"epochs": 0}, "protocol.epochs: must be > 0"),
    ({"epochs": 1, "iterations": 5}, "exactly one"),
    ({"epochs": 1, "lr": "fast"}, "protocol.lr: expected float"),
    ({"epochs": 1, "learning_rate": 0.1}, "unknown protocol key"),
    ({"epochs": 1, "milestones": [3, 1]}, "must be increasing"),
    ({"epochs": 1, "select_by": "best_val"}, "needs val_fraction"),
])
def test_protocol_errors_name_the_key(bad, message):
    with pytest.raises(ValueError, match=message):
        Protocol.from_dict(bad)


def test_step_schedule_and_constant_warmup_follow_he2016():
    p = Protocol.from_dict({"iterations": 64000, "milestones": [32000, 48000], "warmup_iterations": 400,
                            "warmup_lr": 0.01})
    assert lr_at(p, 0, 391, 64000) == 0.01 and lr_at(p, 399, 391, 64000) == 0.01
    assert lr_at(p, 400, 391, 64000) == 0.1
    assert math.isclose(lr_at(p, 32000, 391, 64000), 0.01)
    assert math.isclose(lr_at(p, 48000, 391, 64000), 0.001)


def test_cosine_schedule_ends_near_zero():
    p = Protocol.from_dict({"epochs": 10, "schedule": "cosine", "lr": 0.2})
    assert lr_at(p, 0, 10, 100) == 0.2 and lr_at(p, 99, 10, 100) < 1e-3


def test_iterations_budget_is_exact(tmp_path, synthetic_cache):
    rec = train(make_spec(tmp_path, synthetic_cache, protocol={"epochs": None, "iterations": 11}))
    assert rec["steps"] == 11 and rec["epochs_completed"] == 2


def test_trains_without_mlflow_and_torchsde_installed(tmp_path, synthetic_cache):
    """The GPU image has torch, torchvision and torchdiffeq only: training must still work."""
    import subprocess
    import sys

    spec = make_spec(tmp_path, synthetic_cache, protocol={"epochs": 1},
                     tracking={"enabled": True, "uri": f"sqlite:///{tmp_path}/mlflow.db"})
    code = (
        "import sys, json\n"
        "sys.modules['mlflow'] = None; sys.modules['torchsde'] = None; sys.modules['snakemake'] = None\n"
        "from debench.cli import main\n"
        f"sys.exit(main(['train', '--spec', {json.dumps(json.dumps(spec))}]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "mlflow is not installed" in out.stderr
    rec = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert rec["status"] == "ok" and rec["mlflow_run_id"] is None
