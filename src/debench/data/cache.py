"""Build and read the dataset cache under ``resources/``.

Each dataset is cached once as ``<name>.npz`` (uint8 images ``N x H x W x C`` and int64 labels for
the standard train and test splits) beside ``<name>.json``, which records its sha256, shapes,
source and the per-channel train mean/std. Readers verify the checksum, so a truncated or
altered cache is reported instead of silently trained on.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from debench.data import sources
from debench.track.atomic import atomic_write_bytes, atomic_write_json

DATASETS: dict[str, dict[str, Any]] = {
    "cifar10": {"shape": (32, 32, 3), "classes": 10, "train": 50000, "test": 10000},
    "cifar100": {"shape": (32, 32, 3), "classes": 100, "train": 50000, "test": 10000},
    "mnist": {"shape": (28, 28, 1), "classes": 10, "train": 60000, "test": 10000},
}
SOURCES = ("torchvision", "npz", "synthetic")


class DatasetError(RuntimeError):
    """A dataset is missing, corrupt or of the wrong shape; the message names the file."""


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def prepare_dataset(name: str, source: str, out: Path, **options: Any) -> dict[str, Any]:
    """Fetch ``name`` from ``source`` and write the cache ``out`` (``.npz``) and its ``.json``.

    Args:
        name: a key of :data:`DATASETS`.
        source: ``torchvision`` (download), ``npz`` (local shards; option ``npz_dir``) or
            ``synthetic`` (options ``train_size``, ``test_size``, ``seed``).
        out: path of the ``.npz`` cache; the sidecar is ``out.with_suffix('.json')``.

    Returns:
        The sidecar metadata.

    Raises:
        DatasetError: for an unknown dataset or source, or missing/corrupt input.
    """
    if name not in DATASETS:
        raise DatasetError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    spec = DATASETS[name]
    if source == "torchvision":
        arrays = sources.from_torchvision(name, Path(options.get("download_dir") or out.parent / "downloads"))
    elif source == "npz":
        if not options.get("npz_dir"):
            raise DatasetError("config key 'data.npz_dir' must name the shard folder when data.source is 'npz'")
        arrays = sources.from_npz_shards(name, Path(options["npz_dir"]))
    elif source == "synthetic":
        arrays = sources.synthetic(
            spec["shape"], spec["classes"],
            options.get("train_size", 2560), options.get("test_size", 512), options.get("seed", 0),
        )
    else:
        raise DatasetError(f"config key 'data.source': unknown source {source!r}; use one of {SOURCES}")
    _check_arrays(name, arrays, spec, source)

    x_train = arrays["x_train"].astype(np.float64) / 255.0
    meta = {
        "dataset": name,
        "source": source,
        "num_classes": spec["classes"],
        "image_shape": list(spec["shape"]),
        "train_size": int(len(arrays["y_train"])),
        "test_size": int(len(arrays["y_test"])),
        "mean": x_train.mean(axis=(0, 1, 2)).tolist(),
        "std": x_train.std(axis=(0, 1, 2)).tolist(),
    }
    import io

    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write_bytes(out, buf.getvalue())
    meta["sha256"] = sha256_file(out)
    atomic_write_json(out.with_suffix(".json"), meta)
    return meta


def _check_arrays(name: str, arrays: dict[str, np.ndarray], spec: dict, source: str) -> None:
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.dtype != np.uint8 or tuple(x.shape[1:]) != tuple(spec["shape"]):
            raise DatasetError(
                f"{name} ({source}) {split} images: expected uint8 N x {' x '.join(map(str, spec['shape']))}, "
                f"found {x.dtype} {' x '.join(map(str, x.shape))}"
            )
        if len(x) != len(y):
            raise DatasetError(f"{name} ({source}) {split}: {len(x)} images but {len(y)} labels")
        if len(y) and (y.min() < 0 or y.max() >= spec["classes"]):
            raise DatasetError(f"{name} ({source}) {split}: labels outside 0..{spec['classes'] - 1}")


def load_cached(path: str | Path, verify: bool = True) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read a cache written by :func:`prepare_dataset`.

    Returns:
        ``(arrays, meta)`` with ``x_train``, ``y_train``, ``x_test``, ``y_test``.

    Raises:
        DatasetError: if the file or its sidecar is missing, or the checksum does not match.
    """
    path = Path(path)
    side = path.with_suffix(".json")
    for p in (path, side):
        if not p.exists():
            raise DatasetError(f"dataset cache {p} is missing; run the prepare_data rule (or `debench prepare-data`)")
    meta = json.loads(side.read_text())
    if verify:
        found = sha256_file(path)
        if found != meta.get("sha256"):
            raise DatasetError(
                f"dataset cache {path} is corrupt: sha256 expected {meta.get('sha256')} (from {side.name}), "
                f"found {found}; delete it and run prepare_data again"
            )
    try:
        with np.load(path) as z:
            arrays = {k: z[k] for k in ("x_train", "y_train", "x_test", "y_test")}
    except Exception as exc:  # zipfile/KeyError/ValueError for a damaged archive
        raise DatasetError(f"dataset cache {path} cannot be read: {exc}") from exc
    return arrays, meta
