"""Fault injection in training: numerics, SIGKILL at random points, hostile checkpoints and paths.

Kills: a ``debench train`` process is SIGKILLed at seeded random moments (during start-up, mid
epoch, right after an epoch row is written, i.e. while the checkpoint is written, and near the
end), each time the folder is checked (every file absent or complete), and the run is restarted
until it finishes; its metrics then equal an uninterrupted run's. ``debench aggregate`` is killed
the same way and its tables are always the old or the new complete version.
"""

from __future__ import annotations

import csv
import io
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from debench.errors import ConfigError
from debench.train import checkpoint as ckpt
from debench.train.loop import train
from tests.conftest import ROOT, make_spec
from tests.nan_model import NaNAfter  # noqa: F401  (registers test_nan_after when this file runs alone)

pytestmark = pytest.mark.faults
ENV = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
       "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
       "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}  # the `debench` script
KILL_SEED = 20240917


# ---- numerics ----------------------------------------------------------------------------------



@pytest.fixture(scope="module")
def mnist_cache(tmp_path_factory) -> Path:
    from debench.data import prepare_dataset

    out = tmp_path_factory.mktemp("mnist") / "mnist.npz"
    prepare_dataset("mnist", "synthetic", out, train_size=128, test_size=64, seed=0)
    return out


def test_injected_nan_is_diverged_with_its_epoch(tmp_path, synthetic_cache):
    train(make_spec(tmp_path, synthetic_cache, model="test_nan_after",
                    model_args={"after": 12}, protocol={"epochs": 3}))  # 8 steps per epoch: NaN in epoch 2
    on_disk = json.loads((tmp_path / "run" / "metrics.json").read_text())  # NaN never reaches the JSON
    assert on_disk["status"] == "diverged" and on_disk["failed_epoch"] == 2
    assert "epoch 2" in on_disk["status_detail"] and on_disk["epochs_completed"] == 1
    assert "test_accuracy" not in on_disk


def test_exploding_solver_is_solver_failed(tmp_path, mnist_cache):
    rec = train(make_spec(tmp_path, mnist_cache, model="odenet_mnist", dataset="mnist",
                          model_args={"max_num_steps": 2}, protocol={"epochs": 2, "lr": 0.01}))
    on_disk = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert on_disk == json.loads(json.dumps(rec))
    assert rec["status"] == "solver_failed" and rec["failed_epoch"] == 1
    assert "max_num_steps" in rec["status_detail"] and "test_error" not in rec


@pytest.mark.e2e
def test_failed_solver_run_does_not_stop_the_dag_and_is_never_averaged(tmp_path):
    import pandas as pd
    import yaml

    from tests.test_workflow import SNAKEMAKE, project_copy

    project = project_copy(tmp_path)
    cfg = {
        "preset": "faults", "comparable": False, "seeds": [0],
        "data": {"source": "synthetic", "cache_dir": "resources/data",
                 "synthetic": {"train_size": 128, "test_size": 64, "seed": 0}},
        "runtime": {"device": "cpu", "amp": "off", "compile": False},
        "mlflow": {"enabled": False},
        "experiments": {"node": {
            "table": "neural_ode", "datasets": ["mnist"], "models": ["resnet6_mnist", "odenet_mnist"],
            "model_args": {"odenet_mnist": {"max_num_steps": 2}},
            "protocol": {"iterations": 2, "batch_size": 64, "lr": 0.01, "eval_batch_size": 64}}},
    }
    (project / "config" / "faults.yaml").write_text(yaml.safe_dump(cfg))
    run = subprocess.run(SNAKEMAKE + ["results/faults/tables/summary.json", "--cores", "2",
                                      "--configfile", "config/faults.yaml"],
                         cwd=project, capture_output=True, text=True, timeout=600, env=ENV)
    assert run.returncode == 0, (run.stdout + run.stderr)[-4000:]
    res = project / "results" / "faults"
    runs = pd.read_csv(res / "runs.csv").set_index("model")
    assert runs.loc["odenet_mnist", "status"] == "solver_failed" and runs.loc["resnet6_mnist", "status"] == "ok"
    table = pd.read_csv(res / "tables" / "neural_ode.csv").set_index("model")
    assert table.loc["odenet_mnist", "n"] == 0 and table.loc["odenet_mnist", "n_failed"] == 1
    assert pd.isna(table.loc["odenet_mnist", "mean"])
    assert table.loc["resnet6_mnist", "n"] == 1 and table.loc["resnet6_mnist", "n_failed"] == 0
    assert table.loc["resnet6_mnist", "mean"] == pytest.approx(runs.loc["resnet6_mnist", "test_error"])
    summary = json.loads((res / "tables" / "summary.json").read_text())
    assert summary["runs"] == 2 and summary["runs_failed"] == 1


# ---- kills -------------------------------------------------------------------------------------

def _check_complete_or_absent(run_dir: Path, ckpt_dir: Path) -> None:
    """Every file a reader could pick up is either absent or complete."""
    m = run_dir / "metrics.json"
    if m.exists():
        rec = json.loads(m.read_text())
        assert rec["status"] == "ok" and "test_accuracy" in rec
    e = run_dir / "epochs.csv"
    if e.exists():
        rows = list(csv.reader(io.StringIO(e.read_text())))
        assert rows and rows[0][0] == "epoch"
        assert all(len(r) == len(rows[0]) for r in rows[1:]), rows
        assert [int(r[0]) for r in rows[1:]] == list(range(1, len(rows)))
    for p in ckpt_dir.rglob("*"):
        if p.is_dir() or p.name.startswith("."):
            continue  # an interrupted atomic write leaves a hidden temp file that no reader matches
        if p.suffix == ".pt":
            state = torch.load(p, map_location="cpu", weights_only=True)
            assert state["epoch"] == int(p.stem.split("epoch")[1])
        elif p.suffix == ".json":
            json.loads(p.read_text())


def _popen(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "debench.cli", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env=ENV, start_new_session=True)


def _kill(p: subprocess.Popen) -> None:
    if p.poll() is None:
        os.kill(p.pid, signal.SIGKILL)
    p.wait()


def _wait_rows(path: Path, n: int, p: subprocess.Popen, timeout: float = 60) -> bool:
    end = time.time() + timeout
    while time.time() < end and p.poll() is None:
        if path.exists() and path.read_text().count("\n") >= n + 1:
            return True
        time.sleep(0.01)
    return False


@pytest.mark.slow
def test_sigkill_at_random_points_loses_nothing(tmp_path, synthetic_cache):
    proto = {"epochs": 5, "batch_size": 64, "checkpoint_every": 1}
    reference = train(make_spec(tmp_path / "ref", synthetic_cache, protocol=proto))
    spec = make_spec(tmp_path / "k", synthetic_cache, protocol=proto)
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(spec))
    run_dir, ckpt_dir = tmp_path / "k" / "run", tmp_path / "k" / "ckpt"
    rows = run_dir / "epochs.csv"
    rng = random.Random(KILL_SEED)

    def done_rows() -> int:
        return rows.read_text().count("\n") - 1 if rows.exists() else 0

    # each plan: when to kill, given the process and how far the run had got
    plans = [
        ("during start-up", lambda p: time.sleep(rng.uniform(0.05, 0.5))),
        # mid-epoch: a fixed delay would depend on how fast the process starts on this machine
        ("mid run", lambda p: _wait_rows(rows, done_rows() + 1, p) and time.sleep(rng.uniform(0.1, 0.6))),
        ("right after an epoch row (checkpoint being written)",
         lambda p: _wait_rows(rows, done_rows() + 1, p) and time.sleep(rng.uniform(0.0, 0.03))),
        ("right after an epoch row, later", lambda p: _wait_rows(rows, done_rows() + 1, p)),
        ("near the end", lambda p: _wait_rows(rows, proto["epochs"] - 1, p) and time.sleep(rng.uniform(0.0, 1.2))),
    ]
    kills = []
    for what, wait in plans:
        p = _popen(["train", "--spec", f"@{spec_file}"])
        wait(p)
        finished = p.poll() is not None
        _kill(p)
        kills.append((what, done_rows(), finished))
        _check_complete_or_absent(run_dir, ckpt_dir)
        if (run_dir / "metrics.json").exists():
            break
    p = _popen(["train", "--spec", f"@{spec_file}"])
    err = p.communicate(timeout=300)[1].decode()
    assert p.returncode == 0, err[-3000:]
    _check_complete_or_absent(run_dir, ckpt_dir)
    assert sum(not f for _, _, f in kills) >= 4, kills  # at least four real kills mid-run
    final = json.loads((run_dir / "metrics.json").read_text())
    for key in ("test_accuracy", "test_loss", "train_loss", "final_test_error", "best_test_accuracy", "steps",
                "epochs_completed", "config_hash", "params"):
        assert final[key] == reference[key], (key, kills)
    ref_rows = list(csv.DictReader(open(tmp_path / "ref" / "run" / "epochs.csv")))
    got_rows = list(csv.DictReader(open(rows)))
    timing = ("epoch_time_s", "images_per_s")
    assert [{k: v for k, v in r.items() if k not in timing} for r in got_rows] == \
        [{k: v for k, v in r.items() if k not in timing} for r in ref_rows]
    print(f"kills survived: {kills}")


def _snapshot(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and not p.name.startswith(".")}


@pytest.mark.slow
def test_sigkill_during_aggregate_leaves_old_or_new_tables(tmp_path, synthetic_cache):
    base = train(make_spec(tmp_path / "src", synthetic_cache, protocol={"epochs": 1}))
    runs = tmp_path / "runs"

    def add_run(seed: int) -> None:
        rec = {**base, "seed": seed, "test_error": base["test_error"] + seed, "experiment": "disc"}
        d = runs / "disc" / "cifar10" / "resnet20" / f"seed{seed}"
        d.mkdir(parents=True)
        (d / "metrics.json").write_text(json.dumps(rec))
        shutil.copy(tmp_path / "src" / "run" / "epochs.csv", d / "epochs.csv")

    for seed in range(3):
        add_run(seed)
    out = tmp_path / "out"
    args = ["aggregate", "--runs", str(runs), "--published", str(ROOT / "config" / "reference" / "published_results.csv"),
            "--out", str(out)]
    t0 = time.time()
    p = _popen(args)
    assert p.wait(timeout=300) == 0, p.stderr.read().decode()[-2000:]
    duration = time.time() - t0
    old = _snapshot(out)
    add_run(3)
    rng = random.Random(KILL_SEED)
    seen = []
    for i in range(3):
        p = _popen(args)
        time.sleep(duration * rng.uniform(0.7, 1.05))
        _kill(p)
        now = _snapshot(out)
        seen.append(now)
        assert set(now) == set(old)
    p = _popen(args)
    assert p.wait(timeout=300) == 0
    new = _snapshot(out)
    assert new != old
    for now in seen:
        for name, data in now.items():
            assert data in (old[name], new[name]), name


# ---- hostile checkpoints and paths -------------------------------------------------------------

class _Bomb:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_bomb_checkpoint_is_refused_and_the_previous_one_used(tmp_path, caplog):
    folder = tmp_path / "ck"
    for epoch in (1, 2):
        ckpt.save_checkpoint(folder, epoch, {"config_hash": "h", "epoch": epoch, "w": torch.ones(2) * epoch})
    marker = tmp_path / "pwned"
    torch.save({"config_hash": "h", "epoch": 3, "payload": _Bomb(str(marker))}, folder / "ckpt-epoch00003.pt")
    state = ckpt.load_latest(folder, "h")
    assert not marker.exists()
    assert state["epoch"] == 2 and torch.equal(state["w"], torch.full((2,), 2.0))
    assert "ckpt-epoch00003.pt cannot be loaded" in caplog.text


def test_truncated_newest_checkpoint_falls_back(tmp_path, synthetic_cache):
    spec = make_spec(tmp_path, synthetic_cache, protocol={"epochs": 2})
    full = train(spec)
    folder = tmp_path / "ckpt" / full["config_hash"]
    newest = folder / "ckpt-epoch00002.pt"
    newest.write_bytes(newest.read_bytes()[:1000])
    (tmp_path / "run" / "metrics.json").unlink()
    again = train(spec)  # resumes from epoch 1, redoes epoch 2 bit-exactly
    assert again["test_accuracy"] == full["test_accuracy"] and again["epochs_completed"] == 2


@pytest.mark.parametrize("key", ["metrics", "checkpoints"])
def test_output_paths_cannot_climb_out_of_the_results_folder(tmp_path, synthetic_cache, key):
    spec = make_spec(tmp_path / "results", synthetic_cache)
    spec["paths"][key] = str(tmp_path / "results" / ".." / ".." / "escaped" / Path(spec["paths"][key]).name)
    with pytest.raises(ConfigError, match=rf"paths.{key}: .* has a '\.\.' component"):
        train(spec)
    assert not (tmp_path.parent / "escaped").exists() and not (tmp_path / "results").exists()


def test_snakemake_wildcards_and_names_keep_paths_inside_results():
    text = (ROOT / "workflow" / "rules" / "common.smk").read_text()
    for name in ("experiment", "dataset", "model"):
        assert f'{name}=r"[A-Za-z0-9_]+"' in text
