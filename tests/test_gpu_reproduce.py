"""The GPU tranche script, end to end on the CPU with a tiny CIFAR-10 and two iterations."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import devdata  # noqa: E402


@pytest.fixture
def tiny_shards(tmp_path) -> Path:
    """Six CIFAR-shaped shards (5 train, 1 test) and their SHA256SUMS, in the shared-data layout."""
    src = tmp_path / "src"
    (src / "cifar10").mkdir(parents=True)
    rng = np.random.default_rng(0)
    lines = []
    for name in [f"train_{i:02d}" for i in range(5)] + ["test"]:
        path = src / "cifar10" / f"{name}.npz"
        np.savez_compressed(path, images=rng.integers(0, 256, (40, 32, 32, 3), dtype=np.uint8),
                            labels=np.arange(40, dtype=np.uint8) % 10)
        lines.append(f"{hashlib.sha256(path.read_bytes()).hexdigest()}  cifar10/{path.name}\n")
    (src / "SHA256SUMS").write_text("".join(lines) + "0" * 64 + "  mnist/test.npz\n")
    return src


def test_split_parts_fit_the_limit_and_join_restores_every_shard(tiny_shards, tmp_path):
    parts = devdata.split(tiny_shards, tmp_path / "parts", max_mib=0.05)
    assert len(parts) > 2
    for part in parts:
        assert sum(f.stat().st_size for f in part.iterdir() if f.name != "SHA256SUMS") <= 0.05 * 2**20
    done = devdata.join(tmp_path / "parts", tmp_path / "npz")
    assert [p.name for p in done] == ["test.npz"] + [f"train_{i:02d}.npz" for i in range(5)]
    for p in done:
        assert p.read_bytes() == (tiny_shards / "cifar10" / p.name).read_bytes()


def test_join_refuses_a_missing_or_corrupt_part(tiny_shards, tmp_path):
    parts = devdata.split(tiny_shards, tmp_path / "parts", max_mib=0.05)
    piece = sorted(parts[-1].glob("*.0*"))[0]
    piece.write_bytes(piece.read_bytes()[:-1] + b"\0")
    with pytest.raises(SystemExit, match=piece.name.split(".npz")[0] + ".npz: sha256"):
        devdata.join(tmp_path / "parts", tmp_path / "npz")
    piece.unlink()
    with pytest.raises(SystemExit, match="sha256|no pieces"):
        devdata.join(tmp_path / "parts", tmp_path / "npz2")


@pytest.mark.slow
def test_gpu_script_runs_end_to_end_on_cpu_and_its_records_merge(tiny_shards, tmp_path):
    devdata.split(tiny_shards, tmp_path / "parts", max_mib=0.05)
    results, out = tmp_path / "results", tmp_path / "out"
    env = {**os.environ, "PARTS": str(tmp_path / "parts"), "RESULTS": str(results), "OUT": str(out),
           "ITERATIONS": "2", "DEVICE": "cpu", "SEEDS": "0 1 2", "BUDGET_S": "300", "PYTHON": sys.executable,
           "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(["bash", "benchmarks/gpu_reproduce.sh"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=400)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (out / "gpu_runs.tar.gz").is_file() and (out / "gpu_reproduce.log").is_file()
    for seed in range(3):
        rec = json.loads((results / "runs/resnet_he2016/cifar10/resnet20" / f"seed{seed}/metrics.json").read_text())
        assert rec["status"] == "ok" and rec["steps"] == 2
        assert rec["comparable"] is False and rec["preset"] == "gpu_reproduce_reduced"  # 2 of 64k iterations
        assert rec["protocol"]["milestones"] == []
    from debench.report.runs import merge_runs

    merged = merge_runs([results / "runs"], tmp_path / "published" / "runs.csv")
    assert sorted(merged["seed"]) == [0, 1, 2] and set(merged["model"]) == {"resnet20"}
    again = subprocess.run(["bash", "benchmarks/gpu_reproduce.sh"], cwd=ROOT, env=env, capture_output=True,
                           text=True, timeout=200)
    assert again.returncode == 0 and again.stdout.count("finished earlier, skipped") == 3
