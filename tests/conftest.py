"""Shared fixtures: a small synthetic dataset cache, run specs, the offline shared data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path | None:
    """``$DEBENCH_SHARED_DATA`` or ``../shared/data`` beside the checkout, if present."""
    cand = os.environ.get("DEBENCH_SHARED_DATA") or str(ROOT.parent / "shared" / "data")
    p = Path(cand)
    return p if (p / "cifar10" / "test.npz").exists() else None


@pytest.fixture
def shared_data() -> Path:
    p = shared_data_dir()
    if p is None:
        pytest.skip("offline CIFAR-10/MNIST shards not found (set DEBENCH_SHARED_DATA or place ../shared/data)")
    return p


@pytest.fixture
def one_thread():
    """Tiny models: one intra-op thread is faster, and on a shared 2-core machine two threads
    spin against each other (the stochastic suite took 121 s with two, 26 s with one)."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def synthetic_cache(tmp_path_factory) -> Path:
    from debench.data import prepare_dataset

    out = tmp_path_factory.mktemp("data") / "cifar10.npz"
    prepare_dataset("cifar10", "synthetic", out, train_size=512, test_size=128, seed=0)
    return out


def make_spec(tmp: Path, cache: Path, **overrides) -> dict:
    """A small CPU run spec writing under ``tmp``; keyword arguments override top-level keys."""
    spec = {
        "experiment": "test", "preset": "test", "table": "discrete", "mode": "paper",
        "model": "resnet20", "dataset": "cifar10", "seed": 0,
        "protocol": {"batch_size": 64, "epochs": 2, "lr": 0.02, "eval_batch_size": 128},
        "model_args": {},
        "runtime": {"device": "cpu", "threads": 1},
        "data": {"cache": str(cache)},
        "tracking": {"enabled": False},
        "paths": {"metrics": str(tmp / "run" / "metrics.json"), "checkpoints": str(tmp / "ckpt")},
    }
    for k, v in overrides.items():
        if isinstance(v, dict) and isinstance(spec.get(k), dict):
            spec[k] = {**spec[k], **v}
        else:
            spec[k] = v
    return spec


def train_concurrently(specs: list[dict], timeout: float) -> list[str]:
    """Start one ``debench train`` process per spec at once; wait for all; return their output.

    Fails the calling test with the tail of the output of any process that exits non-zero.
    """
    procs = [subprocess.Popen([sys.executable, "-m", "debench.cli", "train", "--spec", json.dumps(spec)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for spec in specs]
    outputs = []
    for p in procs:
        out = p.communicate(timeout=timeout)[0].decode()
        assert p.returncode == 0, out[-2000:]
        outputs.append(out)
    return outputs
