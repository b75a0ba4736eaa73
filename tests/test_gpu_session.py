"""benchmarks/gpu_session.sh rehearsed on the CPU: the one-call GPU session's order, budget and files.

The GPU machine has no snakemake, mlflow, torchsde or jsonschema: a sitecustomize makes them
unimportable here, so what needs them fails here as it would there.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from tests.conftest import ROOT

BLOCK = '''import sys
class _Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("mlflow", "snakemake", "torchsde", "jsonschema"):
            raise ModuleNotFoundError(f"No module named {name!r} (as on the GPU machine)", name=name)
sys.meta_path.insert(0, _Block())
'''


def _session(tmp_path: Path, **env: str) -> tuple[subprocess.CompletedProcess, Path]:
    block = tmp_path / "block"
    block.mkdir()
    (block / "sitecustomize.py").write_text(BLOCK)
    out = tmp_path / "out"
    full = {**os.environ, "OUT": str(out), "PYTHON": sys.executable, "PYTHONPATH": str(block), **env}
    res = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_session.sh")], env=full, capture_output=True,
                         text=True, timeout=900)
    return res, out


def _files(out: Path) -> list[Path]:
    return [p for p in out.rglob("*") if p.is_file()]


@pytest.mark.slow
def test_budget_too_small_skips_every_step_and_says_so(tmp_path):
    res, out = _session(tmp_path, BUDGET_S="3", DEVICE="cpu")
    assert res.returncode == 0, res.stdout + res.stderr
    log = (out / "session.log").read_text()
    for step in ("1. calibrate", "2. packing", "4. benchmarks/gpu_check.sh"):
        assert f"== {step}" in log and "skipped" in log.split(f"== {step}")[1].splitlines()[0], log
    assert "torchsde missing" in (out / "env.txt").read_text()  # the blocker works like the GPU box
    assert sorted(p.name for p in _files(out)) == ["env.txt", "session.log"]


@pytest.mark.slow
def test_cpu_rehearsal_runs_every_step_in_order_within_the_file_limits(tmp_path):
    stub = tmp_path / "check.sh"
    stub.write_text('echo "budget $BUDGET_S" > "$1/stub.txt"\n')
    res, out = _session(tmp_path, BUDGET_S="800", DEVICE="cpu", MODELS="mlp300_mnist latent_sde", CAL_STEPS="1",
                        CAL_WARMUP="0", PACK_MODELS="resnet20", PACK_JOBS="1 2", PACK_EPOCHS="1",
                        PACK_TRAIN_SIZE="128", PACK_DATA="synthetic", GPU_CHECK=f"bash {stub}")
    log = (out / "session.log").read_text()
    assert res.returncode == 0, log
    order = [log.index(f"== {s}") for s in ("1. calibrate", "2. packing", "4. benchmarks/gpu_check.sh")]
    assert order == sorted(order), log
    assert "== 3." not in log  # CUDA graphs: GPU only
    cal = {r["model"]: r for r in json.loads((out / "calibration_cuda.json").read_text())}
    assert cal["mlp300_mnist"]["median_img_s"] > 0 and cal["mlp300_mnist"]["flops_per_image"] > 0
    assert cal["latent_sde"]["skipped"] == "needs torchsde" and "skipped: latent_sde (needs torchsde)" in log
    packing = json.loads((out / "packing_resnet20.json").read_text())
    assert [r["jobs"] for r in packing] == [1, 2]
    with tarfile.open(out / "gpu_check.tar.gz") as tar:
        stub_txt = tar.extractfile("gpu_check/stub.txt").read().decode()
    assert 0 < int(stub_txt.split()[1]) < 800  # gpu_check got the time left, not the whole budget
    files = _files(out)
    assert len(files) <= 8 and all(len(p.relative_to(out).parts) <= 3 for p in files), files
    assert "gpu_session finished in" in log
