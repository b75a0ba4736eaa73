"""Fault injection, corrupt datasets: each is a DatasetError naming the file, what was expected and
what was found; an offline torchvision download says how to use local npz shards instead."""

from __future__ import annotations

import json
import shutil
import urllib.error
from pathlib import Path

import numpy as np
import pytest

from debench.data import DatasetError, load_cached, prepare_dataset
from debench.data.cache import sha256_file

pytestmark = pytest.mark.faults


@pytest.fixture
def cache(tmp_path, synthetic_cache) -> Path:
    dst = tmp_path / "cifar10.npz"
    shutil.copy(synthetic_cache, dst)
    shutil.copy(synthetic_cache.with_suffix(".json"), dst.with_suffix(".json"))
    return dst


def _reseal(path: Path) -> None:
    """Make the sidecar's checksum match the (damaged) file, so the damage itself must be caught."""
    side = path.with_suffix(".json")
    meta = json.loads(side.read_text())
    meta["sha256"] = sha256_file(path)
    side.write_text(json.dumps(meta))


def _rewrite(path: Path, **changes) -> None:
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    arrays.update(changes)
    np.savez(path, **arrays)
    _reseal(path)


def _shards(root: Path, name: str = "cifar10", shape=(32, 32, 3), labels_max: int = 9) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for f, n in (("train_0.npz", 40), ("train_1.npz", 40), ("test.npz", 20)):
        np.savez(folder / f, images=rng.integers(0, 255, (n, *shape), dtype=np.uint8),
                 labels=rng.integers(0, labels_max + 1, n))
    return folder


def test_checksum_mismatch_names_file_expected_and_found(cache):
    want = json.loads(cache.with_suffix(".json").read_text())["sha256"]
    data = bytearray(cache.read_bytes())
    data[len(data) // 2] ^= 0xFF
    cache.write_bytes(bytes(data))
    with pytest.raises(DatasetError) as err:
        load_cached(cache)
    msg = str(err.value)
    assert str(cache) in msg and f"expected {want}" in msg and f"found {sha256_file(cache)}" in msg


def test_truncated_cache_is_corrupt_not_trained_on(cache):
    cache.write_bytes(cache.read_bytes()[: cache.stat().st_size // 3])
    with pytest.raises(DatasetError, match="sha256 expected .* found "):
        load_cached(cache)
    _reseal(cache)  # even with a matching checksum the archive itself is unreadable
    with pytest.raises(DatasetError) as err:
        load_cached(cache)
    msg = str(err.value)
    assert str(cache) in msg and "expected an npz archive with x_train" in msg and "found " in msg


def test_cache_of_the_wrong_shape(cache):
    _rewrite(cache, x_train=np.zeros((8, 28, 28, 1), np.uint8), y_train=np.zeros(8, np.int64))
    with pytest.raises(DatasetError) as err:
        load_cached(cache)
    msg = str(err.value)
    assert str(cache) in msg and "expected uint8 N x 32 x 32 x 3" in msg and "found uint8 8 x 28 x 28 x 1" in msg


def test_cache_with_labels_out_of_range(cache):
    _rewrite(cache, y_test=np.full(128, 10, np.int64))
    with pytest.raises(DatasetError) as err:
        load_cached(cache)
    msg = str(err.value)
    assert str(cache) in msg and "labels expected in 0..9" in msg and "found 10..10" in msg


def test_missing_sidecar(cache):
    cache.with_suffix(".json").unlink()
    with pytest.raises(DatasetError) as err:
        load_cached(cache)
    msg = str(err.value)
    assert str(cache.with_suffix(".json")) in msg and "expected cifar10.npz and its sidecar cifar10.json" in msg
    assert "found ['cifar10.npz']" in msg


def test_missing_cache(tmp_path):
    with pytest.raises(DatasetError, match="cifar10.npz is missing"):
        load_cached(tmp_path / "cifar10.npz")


def test_truncated_npz_shard(tmp_path):
    folder = _shards(tmp_path / "shards")
    shard = folder / "train_1.npz"
    shard.write_bytes(shard.read_bytes()[:200])
    with pytest.raises(DatasetError) as err:
        prepare_dataset("cifar10", "npz", tmp_path / "out" / "cifar10.npz", npz_dir=str(tmp_path / "shards"))
    msg = str(err.value)
    assert str(shard) in msg and "expected an npz archive with keys 'images' and 'labels'" in msg and "found " in msg
    assert not (tmp_path / "out" / "cifar10.npz").exists()


def test_npz_shard_of_the_wrong_shape(tmp_path):
    _shards(tmp_path / "shards", name="mnist", shape=(32, 32))
    with pytest.raises(DatasetError) as err:
        prepare_dataset("mnist", "npz", tmp_path / "out" / "mnist.npz", npz_dir=str(tmp_path / "shards"))
    msg = str(err.value)
    assert "mnist/train_0.npz" in msg and "expected uint8 N x 28 x 28 x 1" in msg and "found uint8 40 x 32 x 32" in msg


def test_npz_shard_with_labels_out_of_range(tmp_path):
    _shards(tmp_path / "shards", labels_max=10)
    with pytest.raises(DatasetError) as err:
        prepare_dataset("cifar10", "npz", tmp_path / "out" / "cifar10.npz", npz_dir=str(tmp_path / "shards"))
    msg = str(err.value)
    assert "cifar10/train_0.npz" in msg and "labels expected in 0..9" in msg and "found 0..10" in msg


def test_missing_npz_shards_lists_what_is_there(tmp_path):
    folder = _shards(tmp_path / "shards")
    (folder / "test.npz").unlink()
    with pytest.raises(DatasetError) as err:
        prepare_dataset("cifar10", "npz", tmp_path / "out" / "cifar10.npz", npz_dir=str(tmp_path / "shards"))
    msg = str(err.value)
    assert f"expected {folder}/train*.npz and {folder}/test.npz" in msg and "found ['train_0.npz', 'train_1.npz']" in msg


def test_offline_torchvision_download_says_how_to_use_npz(tmp_path, monkeypatch):
    import torchvision.datasets as tvd

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(tvd, "CIFAR10", offline)
    with pytest.raises(DatasetError) as err:
        prepare_dataset("cifar10", "torchvision", tmp_path / "cifar10.npz")
    msg = str(err.value)
    assert "could not download cifar10" in msg and "Temporary failure in name resolution" in msg
    assert "data.source: npz" in msg and "data.npz_dir" in msg


def test_cli_reports_dataset_errors_cleanly(tmp_path, cache, capsys):
    from debench.cli import main

    cache.write_bytes(b"not an archive")
    spec = {"experiment": "t", "model": "resnet20", "dataset": "cifar10", "seed": 0,
            "protocol": {"epochs": 1}, "runtime": {"device": "cpu", "threads": 1},
            "data": {"cache": str(cache)}, "tracking": {"enabled": False},
            "paths": {"metrics": str(tmp_path / "run" / "metrics.json"), "checkpoints": str(tmp_path / "ck")}}
    assert main(["train", "--spec", json.dumps(spec)]) == 2
    err = capsys.readouterr().err
    assert "debench train: error: dataset cache" in err and "is corrupt" in err and "Traceback" not in err
    assert not (tmp_path / "run" / "metrics.json").exists()
