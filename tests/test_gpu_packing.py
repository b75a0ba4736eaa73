"""benchmarks/gpu_packing.py end to end on the CPU with a tiny budget (the GPU run uses the same code)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_packing_benchmark_runs_concurrent_jobs_and_packing_does_not_change_what_a_seed_learns(tmp_path):
    out = tmp_path / "packing.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_packing.py"), "--device", "cpu",
                           "--models", "resnet20", "--jobs", "1", "2", "--epochs", "3", "--train-size", "128",
                           "--batch", "64", "--repeats", "1", "--threads", "1", "--out", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    rows = {r["jobs"]: r for r in json.loads(out.read_text())}
    assert set(rows) == {1, 2} and rows[1]["ratio_end_to_end"] == 1.0
    assert rows[2]["end_to_end_img_s"] > 0
    stamps = rows[2]["runs"][0]["epoch_stamps_s"]
    assert [len(s) for s in stamps] == [3, 3]  # every epoch line of both jobs was stamped
    # the steady rate exists exactly when the two jobs' training overlapped
    assert (rows[2]["steady_img_s"] is not None) == (min(s[-1] for s in stamps) > max(s[0] for s in stamps))
    acc1, acc2 = rows[1]["runs"][0]["test_accuracy"], rows[2]["runs"][0]["test_accuracy"]
    assert len(acc1) == 1 and len(acc2) == 2
    # on the CPU a run is repeatable given seed and threads: seed 0 learns the same packed or alone
    assert acc2[0] == acc1[0]
    assert "one-at-a-time" in proc.stdout


def test_packing_benchmark_needs_the_one_job_baseline():
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_packing.py"), "--jobs", "2", "4"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "--jobs must include 1" in proc.stderr


def _packing():
    import importlib.util

    spec = importlib.util.spec_from_file_location("gpu_packing", ROOT / "benchmarks" / "gpu_packing.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_steady_rate_counts_only_the_window_in_which_all_jobs_train():
    rate = _packing().overlap_rate
    # two jobs, 100 images an epoch, one epoch a second each, side by side: 200 img/s together
    assert rate([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]], 100) == pytest.approx(200.0)
    # the second job starts late: in the window [1.5, 3.0] both run at 100 img/s -> 200 img/s
    assert rate([[1.0, 2.0, 3.0], [1.5, 2.5, 3.5]], 100) == pytest.approx(200.0)
    # one after the other: no moment in which both trained. The old rule (the sum of each job's
    # last-epoch images/s) called this 200 img/s, a 2x packing gain that never happened.
    assert rate([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], 100) is None
    assert rate([[1.0], [1.0, 2.0]], 100) is None  # a single epoch has no rate


def test_only_epoch_end_lines_are_stamped():
    line = _packing().EPOCH_LINE.search
    assert line("[resnet20/cifar10/seed0] epoch 3/6, loss 0.91, train acc 67.10%, test acc 65.20%, 15361 img/s")
    # progress lines inside an epoch (an H200 job printed "epoch 1/6 step 1" before its first epoch
    # ended: a stamp too many, and a window that began before start-up was over)
    assert not line("[resnet20/cifar10/seed0] epoch 1/6 step 1")
    assert not line("[resnet56/cifar10/seed0] epoch 3/164 step 867")
