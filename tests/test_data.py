"""Dataset cache, sources and the on-device augmentation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from debench.data import DatasetError, DeviceData, load_cached, prepare_dataset
from debench.data.device import augment


def test_synthetic_cache_shapes_dtypes_and_stats(synthetic_cache):
    arrays, meta = load_cached(synthetic_cache)
    assert arrays["x_train"].shape == (512, 32, 32, 3) and arrays["x_train"].dtype == np.uint8
    assert arrays["y_test"].shape == (128,) and arrays["y_test"].dtype == np.int64
    assert set(np.unique(arrays["y_train"])) == set(range(10))
    expected = arrays["x_train"].reshape(-1, 3).mean(0) / 255
    np.testing.assert_allclose(meta["mean"], expected, rtol=1e-9)


def test_synthetic_is_deterministic(tmp_path):
    a = prepare_dataset("cifar10", "synthetic", tmp_path / "a.npz", train_size=64, test_size=16)
    b = prepare_dataset("cifar10", "synthetic", tmp_path / "b.npz", train_size=64, test_size=16)
    assert a["sha256"] == b["sha256"]


def test_checksum_mismatch_names_the_file(tmp_path):
    prepare_dataset("cifar10", "synthetic", tmp_path / "c.npz", train_size=32, test_size=8)
    data = bytearray((tmp_path / "c.npz").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tmp_path / "c.npz").write_bytes(bytes(data))
    with pytest.raises(DatasetError, match=r"c\.npz is corrupt: sha256 expected"):
        load_cached(tmp_path / "c.npz")


def test_missing_cache_says_how_to_build_it(tmp_path):
    with pytest.raises(DatasetError, match="prepare_data"):
        load_cached(tmp_path / "nope.npz")


def test_npz_source_wrong_shape_is_reported(tmp_path):
    folder = tmp_path / "cifar10"
    folder.mkdir()
    bad = {"images": np.zeros((4, 28, 28, 3), np.uint8), "labels": np.zeros(4, np.uint8)}
    np.savez(folder / "train_00.npz", **bad)
    np.savez(folder / "test.npz", **bad)
    with pytest.raises(DatasetError, match=r"expected uint8 N x 32 x 32 x 3, found uint8 4 x 28 x 28 x 3"):
        prepare_dataset("cifar10", "npz", tmp_path / "out.npz", npz_dir=str(tmp_path))


def test_npz_source_missing_folder_is_reported(tmp_path):
    with pytest.raises(DatasetError, match="expected .*train\\*.npz"):
        prepare_dataset("cifar10", "npz", tmp_path / "out.npz", npz_dir=str(tmp_path / "absent"))


def test_npz_shards_from_shared_data(shared_data, tmp_path):
    meta = prepare_dataset("mnist", "npz", tmp_path / "mnist.npz", npz_dir=str(shared_data))
    assert (meta["train_size"], meta["test_size"]) == (60000, 10000)
    # the published full-precision MNIST train mean (shared/data/README.md)
    assert abs(meta["mean"][0] - 0.1306604762738429) < 1e-6


def test_augment_crop_is_a_shift_and_flip_mirrors():
    x = torch.arange(2 * 8 * 8 * 1, dtype=torch.uint8).view(2, 8, 8, 1)
    g = torch.Generator().manual_seed(0)
    out = augment(x, g, padding=2, flip=False)
    assert out.shape == x.shape and out.dtype == torch.uint8
    for i in range(2):  # every output is the input shifted by at most 2 pixels, zero-filled
        assert any(
            torch.equal(out[i], torch.nn.functional.pad(x[i], (0, 0, 2, 2, 2, 2))[dy:dy + 8, dx:dx + 8])
            for dy in range(5) for dx in range(5)
        )
    flipped = augment(x, torch.Generator().manual_seed(1), padding=0, flip=True)
    for i in range(2):
        assert torch.equal(flipped[i], x[i]) or torch.equal(flipped[i], x[i].flip(1))


def test_augment_is_reproducible_from_the_generator():
    x = torch.randint(0, 255, (16, 32, 32, 3), dtype=torch.uint8)
    a = augment(x, torch.Generator().manual_seed(5), 4, True)
    b = augment(x, torch.Generator().manual_seed(5), 4, True)
    assert torch.equal(a, b)


def test_device_data_batches_cover_the_train_split_once(synthetic_cache):
    arrays, meta = load_cached(synthetic_cache)
    d = DeviceData(arrays, meta, torch.device("cpu"), val_fraction=0.25, split_seed=0)
    assert d.num_train == 384 and len(d.y_val) == 128
    labels = torch.cat([y for _, y in d.train_batches(100, torch.Generator().manual_seed(0))])
    assert len(labels) == 384 and torch.equal(labels.sort().values, d.y_train.sort().values)
    x, _ = next(d.train_batches(8, torch.Generator().manual_seed(0), crop_padding=4, flip=True))
    assert x.dtype == torch.float32 and x.is_contiguous(memory_format=torch.channels_last)


def test_dataset_error_lives_in_errors_and_sources_do_not_import_the_cache():
    import ast

    import debench.data
    import debench.data.cache
    import debench.data.sources as sources
    from debench.errors import DatasetError as FromErrors

    assert debench.data.DatasetError is debench.data.cache.DatasetError is FromErrors
    tree = ast.parse(open(sources.__file__).read())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not {m for m in imported if m and m.startswith("debench.data")}, imported  # no cache <-> sources cycle
