"""The three data sources: torchvision download, local ``.npz`` shards, synthetic patterns.

Sources know nothing of the dataset registry (:mod:`debench.data.cache` imports them, not the
other way round): the caller passes the expected shape and class count.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from debench.errors import DatasetError


def from_torchvision(name: str, root: Path) -> dict[str, np.ndarray]:
    """Download (once) with torchvision and return uint8 NHWC arrays."""
    import torchvision.datasets as tvd

    cls = {"cifar10": tvd.CIFAR10, "cifar100": tvd.CIFAR100, "mnist": tvd.MNIST}[name]
    out = {}
    for split, train in (("train", True), ("test", False)):
        try:
            ds = cls(str(root), train=train, download=True)
        except Exception as exc:  # URLError, RuntimeError from a failed or offline download
            raise DatasetError(
                f"torchvision could not download {name} into {root}: {exc}. Offline? Set "
                "data.source: npz and data.npz_dir to a folder of .npz shards (see config/README.md)"
            ) from exc
        x = np.asarray(ds.data, dtype=np.uint8)
        if x.ndim == 3:
            x = x[..., None]
        out[f"x_{split}"] = x
        out[f"y_{split}"] = np.asarray(ds.targets, dtype=np.int64)
    return out


def from_npz_shards(name: str, root: Path, shape: tuple[int, ...], num_classes: int) -> dict[str, np.ndarray]:
    """Read ``<root>/<name>/train*.npz`` and ``test.npz`` (keys ``images``, ``labels``).

    Args:
        name: dataset name (the shard folder under ``root``).
        root: the shard root (config ``data.npz_dir``).
        shape: expected shape of one image (H x W x C).
        num_classes: expected label count.

    Returns:
        uint8 NHWC ``x_train``/``x_test`` and int64 ``y_train``/``y_test``.

    Raises:
        DatasetError: naming the folder or shard that is missing, unreadable or of the wrong shape.
    """
    folder = root / name
    train_files = sorted(folder.glob("train*.npz"))
    test_file = folder / "test.npz"
    if not train_files or not test_file.exists():
        raise DatasetError(
            f"npz source: expected {folder}/train*.npz and {test_file}, "
            f"found {sorted(p.name for p in folder.glob('*'))if folder.exists() else 'no such folder'}"
        )
    out = {}
    for split, files in (("train", train_files), ("test", [test_file])):
        xs, ys = [], []
        for f in files:
            try:
                with np.load(f) as z:
                    x, y = z["images"], z["labels"]
            except Exception as exc:
                raise DatasetError(f"npz shard {f} cannot be read: expected an npz archive with keys 'images' "
                                   f"and 'labels', found {type(exc).__name__}: {exc} (truncated?)") from exc
            _check_shard(f, x, y, shape, num_classes)
            xs.append(x)
            ys.append(y)
        x = np.concatenate(xs)
        out[f"x_{split}"] = x[..., None] if x.ndim == 3 else x
        out[f"y_{split}"] = np.concatenate(ys).astype(np.int64)
    return out


def _check_shard(path: Path, x: np.ndarray, y: np.ndarray, expected: tuple[int, ...], num_classes: int) -> None:
    shape = tuple(x.shape[1:]) + ((1,) if x.ndim == 3 else ())
    if x.dtype != np.uint8 or shape != tuple(expected):
        raise DatasetError(f"npz shard {path}: 'images' expected uint8 N x {' x '.join(map(str, expected))}, "
                           f"found {x.dtype} {' x '.join(map(str, x.shape))}")
    if len(y) != len(x):
        raise DatasetError(f"npz shard {path}: expected one label per image ({len(x)}), found {len(y)} labels")
    if len(y) and (y.min() < 0 or y.max() >= num_classes):
        raise DatasetError(f"npz shard {path}: labels expected in 0..{num_classes - 1}, "
                           f"found {y.min()}..{y.max()}")


def synthetic(shape: tuple[int, int, int], num_classes: int, train_size: int, test_size: int,
              seed: int = 0) -> dict[str, np.ndarray]:
    """A deterministic, learnable image dataset of the given shape.

    Each class has its own colour and an oriented sinusoidal grating; each image adds a random
    phase, contrast and Gaussian noise, so a small CNN gets well above chance in a few dozen steps
    while the task is not trivially separable by mean colour alone.
    """
    h, w, c = shape
    rng = np.random.default_rng(seed)
    colors = rng.uniform(0.25, 0.75, size=(num_classes, c))
    angles = rng.uniform(0, np.pi, size=num_classes)
    freqs = rng.uniform(0.15, 0.6, size=num_classes)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)

    def make(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.integers(0, num_classes, size=n)
        phase = rng.uniform(0, 2 * np.pi, size=(n, 1, 1))
        contrast = rng.uniform(0.1, 0.25, size=(n, 1, 1, 1))
        proj = np.cos(angles[y])[:, None, None] * xx + np.sin(angles[y])[:, None, None] * yy
        grating = np.sin(freqs[y][:, None, None] * proj + phase)[..., None]
        img = colors[y][:, None, None, :] + contrast * grating + rng.normal(0, 0.12, size=(n, h, w, c))
        return (np.clip(img, 0, 1) * 255).round().astype(np.uint8), y.astype(np.int64)

    x_train, y_train = make(train_size)
    x_test, y_test = make(test_size)
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}
