"""Shared fixtures: a small synthetic dataset cache, run specs, the offline shared data."""

from __future__ import annotations

import os
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
