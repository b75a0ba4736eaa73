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
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from debench.data import sources
from debench.errors import DatasetError
from debench.track.atomic import atomic_write_bytes, atomic_write_json

SOURCES = ("torchvision", "npz", "synthetic")


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset debench can cache.

    Attributes:
        name: config name (``cifar10``, ``mnist``, ``eight_gaussians``).
        kind: ``image`` (uint8 ``N x H x W x C``, augmented and normalized for classification)
            or ``array`` (float32 arrays handed to the model as they are: 2-D points, series).
        shape: shape of one example.
        num_classes: label count (0 where labels are unused).
        builder: for ``array`` datasets, ``builder(seed, train_size, test_size) -> arrays``
            (keys ``x_train``, ``y_train``, ``x_test``, ``y_test``); image datasets come from
            the configured source instead.
        sizes: standard (train, test) sizes.
    """

    name: str
    kind: str
    shape: tuple[int, ...]
    num_classes: int
    sizes: tuple[int, int]
    builder: Callable[..., dict[str, np.ndarray]] | None = None


DATASETS: dict[str, DatasetSpec] = {}


def register_dataset(spec: DatasetSpec) -> DatasetSpec:
    """Add a dataset (a model family's toy densities or time series) to :data:`DATASETS`."""
    if spec.kind not in ("image", "array"):
        raise ValueError(f"dataset {spec.name!r}: kind must be 'image' or 'array'")
    DATASETS[spec.name] = spec
    return spec


for _spec in (
    DatasetSpec("cifar10", "image", (32, 32, 3), 10, (50000, 10000)),
    DatasetSpec("cifar100", "image", (32, 32, 3), 100, (50000, 10000)),
    DatasetSpec("mnist", "image", (28, 28, 1), 10, (60000, 10000)),
):
    register_dataset(_spec)


__all__ = ["DATASETS", "DatasetError", "DatasetSpec", "load_cached", "prepare_dataset", "register_dataset"]


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
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
        raise DatasetError(f"unknown dataset {name!r}; known: {', '.join(sorted(DATASETS))}")
    spec = DATASETS[name]
    if spec.kind == "array":
        arrays = spec.builder(
            seed=options.get("seed", 0),
            train_size=options.get("train_size") or spec.sizes[0],
            test_size=options.get("test_size") or spec.sizes[1],
        )
    elif source == "torchvision":
        arrays = sources.from_torchvision(name, Path(options.get("download_dir") or out.parent / "downloads"))
    elif source == "npz":
        if not options.get("npz_dir"):
            raise DatasetError("config key 'data.npz_dir' must name the shard folder when data.source is 'npz'")
        arrays = sources.from_npz_shards(name, Path(options["npz_dir"]), spec.shape, spec.num_classes)
    elif source == "synthetic":
        arrays = sources.synthetic(
            spec.shape, spec.num_classes,
            options.get("train_size") or 2560, options.get("test_size") or 512, options.get("seed", 0),
        )
    else:
        raise DatasetError(f"config key 'data.source': unknown source {source!r}; use one of {SOURCES}")
    _check_arrays(name, arrays, spec, source)

    meta = {
        "dataset": name,
        "kind": spec.kind,
        "source": source if spec.kind == "image" else "generated",
        "num_classes": spec.num_classes,
        "shape": list(spec.shape),
        "train_size": int(len(arrays["y_train"])),
        "test_size": int(len(arrays["y_test"])),
    }
    if spec.kind == "image":
        x_train = arrays["x_train"].astype(np.float64) / 255.0
        meta["mean"] = x_train.mean(axis=(0, 1, 2)).tolist()
        meta["std"] = x_train.std(axis=(0, 1, 2)).tolist()
    import io

    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write_bytes(out, buf.getvalue())
    meta["sha256"] = sha256_file(out)
    atomic_write_json(out.with_suffix(".json"), meta)
    return meta


def _check_arrays(name: str, arrays: dict[str, np.ndarray], spec: DatasetSpec, source: str) -> None:
    dtype = np.uint8 if spec.kind == "image" else np.float32
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.dtype != dtype or tuple(x.shape[1:]) != tuple(spec.shape):
            raise DatasetError(
                f"{name} ({source}) {split} data: expected {np.dtype(dtype).name} N x "
                f"{' x '.join(map(str, spec.shape))}, found {x.dtype} {' x '.join(map(str, x.shape))}"
            )
        if len(x) != len(y):
            raise DatasetError(f"{name} ({source}) {split}: {len(x)} examples but {len(y)} labels")
        if spec.num_classes and len(y) and (y.min() < 0 or y.max() >= spec.num_classes):
            raise DatasetError(f"{name} ({source}) {split}: labels expected in 0..{spec.num_classes - 1}, "
                               f"found {y.min()}..{y.max()}")


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
            raise DatasetError(f"dataset cache {p} is missing: expected {path.name} and its sidecar {side.name} "
                               f"in {path.parent}, found {sorted(q.name for q in path.parent.glob(path.stem + '.*'))}; "
                               "run the prepare_data rule (or `debench prepare-data`)")
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
        raise DatasetError(f"dataset cache {path} cannot be read: expected an npz archive with x_train, "
                           f"y_train, x_test, y_test, found {type(exc).__name__}: {exc}") from exc
    spec = DATASETS.get(meta.get("dataset", ""))
    if spec is not None:
        try:
            _check_arrays(spec.name, arrays, spec, "cache")
        except DatasetError as exc:
            raise DatasetError(f"dataset cache {path}: {exc}; delete it and run prepare_data again") from exc
    return arrays, meta
