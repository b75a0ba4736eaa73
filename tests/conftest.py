"""Shared fixtures: a small synthetic dataset cache, run specs, the offline shared data.

Missing prerequisites (offline data, Chromium, MLflow, SLURM, a GPU for ``cuda`` tests) skip a
test on a developer's machine and fail it in CI (``CI=true``): :func:`skip_missing`, and the hooks
below for ``pytest.importorskip``. Tests marked ``cuda`` are deselected unless ``-m`` names ``cuda``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MISSING = "missing prerequisite: "


def in_ci() -> bool:
    """``CI`` is set to true (read at call time, so a test can set it for an inner session)."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def skip_missing(what: str):
    """Skip a test whose prerequisite ``what`` is absent; in CI (``CI=true``) fail it instead.

    Args:
        what: what is missing and how to provide it (the message names it in both cases).

    Raises:
        pytest.skip.Exception: outside CI.
        pytest.fail.Exception: in CI, so that a run that tested nothing cannot pass.
    """
    if in_ci():
        pytest.fail(f"CI=true, and this test needs what is missing: {what}", pytrace=False)
    pytest.skip(MISSING + what)


def _skip_reason(report) -> str | None:
    longrepr = report.longrepr
    return longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else None


def _fail_import_skip_in_ci(report) -> None:
    """``pytest.importorskip`` (in a test or at module level) fails in CI, naming the module."""
    reason = _skip_reason(report) if report.skipped else None
    if in_ci() and reason and reason.removeprefix("Skipped: ").startswith(("could not import", MISSING)):
        report.outcome = "failed"
        report.longrepr = f"CI=true, and this test needs what is missing: {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    _fail_import_skip_in_ci(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    _fail_import_skip_in_ci(outcome.get_result())


def pytest_collection_modifyitems(config, items):
    """Deselect ``cuda`` tests unless the ``-m`` expression names the marker."""
    if "cuda" in (config.getoption("markexpr") or ""):
        return
    keep = [i for i in items if i.get_closest_marker("cuda") is None]
    if len(keep) != len(items):
        config.hook.pytest_deselected(items=[i for i in items if i.get_closest_marker("cuda") is not None])
        items[:] = keep


def shared_reference_dir() -> Path:
    """``$DEBENCH_SHARED_REFERENCE``, else ``reference/`` beside ``$DEBENCH_SHARED_DATA``, else
    ``../shared/reference`` beside the checkout (it may not exist)."""
    if os.environ.get("DEBENCH_SHARED_REFERENCE"):
        return Path(os.environ["DEBENCH_SHARED_REFERENCE"])
    if os.environ.get("DEBENCH_SHARED_DATA"):
        return Path(os.environ["DEBENCH_SHARED_DATA"]).parent / "reference"
    return ROOT.parent / "shared" / "reference"


def shared_data_dir() -> Path | None:
    """``$DEBENCH_SHARED_DATA`` or ``../shared/data`` beside the checkout, if present."""
    cand = os.environ.get("DEBENCH_SHARED_DATA") or str(ROOT.parent / "shared" / "data")
    p = Path(cand)
    return p if (p / "cifar10" / "test.npz").exists() else None


@pytest.fixture
def shared_data() -> Path:
    p = shared_data_dir()
    if p is None:
        skip_missing("the offline CIFAR-10/MNIST shards (set DEBENCH_SHARED_DATA or place ../shared/data)")
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
