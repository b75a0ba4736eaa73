"""2-D toy densities for continuous normalizing flows (FFJORD / RNODE toy experiments).

Each sampler draws ``n`` float32 points from a fixed density roughly inside [-4, 4]^2 using only
the ``numpy.random.Generator`` it is given, so a dataset is a pure function of its seed. The
train and test splits come from independent streams (``seed`` and ``seed + 1``). Labels are
zeros (the flows are unconditional).
"""

from __future__ import annotations

from functools import partial
from typing import Callable

import numpy as np

from debench.data.cache import DatasetSpec, register_dataset

SIZES = (20000, 2000)


def eight_gaussians(rng: np.random.Generator, n: int) -> np.ndarray:
    """Eight Gaussians (std 0.35) whose centres sit on a circle of radius 2.83."""
    angles = rng.integers(0, 8, n) * (np.pi / 4)
    centres = 2.0 * np.sqrt(2.0) * np.stack([np.cos(angles), np.sin(angles)], 1)
    return centres + 0.35 * rng.standard_normal((n, 2))


def checkerboard(rng: np.random.Generator, n: int) -> np.ndarray:
    """Uniform on the 8 black squares of a 4x4 checkerboard of side 8 centred at 0."""
    x = rng.uniform(-2, 2, n)
    y = rng.uniform(0, 1, n) - 2 * rng.integers(0, 2, n) + np.floor(x) % 2
    return 2 * np.stack([x, y], 1)


def two_spirals(rng: np.random.Generator, n: int) -> np.ndarray:
    """Two interleaved Archimedean spirals with Gaussian noise 0.1."""
    turn = np.sqrt(rng.uniform(0, 1, n)) * 3 * np.pi
    sign = np.where(rng.integers(0, 2, n) == 0, 1.0, -1.0)
    pts = sign[:, None] * np.stack([-np.cos(turn) * turn, np.sin(turn) * turn], 1) / 3
    return pts + 0.1 * rng.standard_normal((n, 2))


def pinwheel(rng: np.random.Generator, n: int, arms: int = 5, radial: float = 0.3, tangential: float = 0.1,
             rate: float = 0.25) -> np.ndarray:
    """``arms`` curved blades: stretched Gaussians rotated by an angle growing with the radius."""
    arm = rng.integers(0, arms, n)
    feats = rng.standard_normal((n, 2)) * np.array([radial, tangential]) + np.array([1.0, 0.0])
    angle = arm * 2 * np.pi / arms + rate * np.exp(feats[:, 0])
    cos, sin = np.cos(angle), np.sin(angle)
    rotated = np.stack([cos * feats[:, 0] - sin * feats[:, 1], sin * feats[:, 0] + cos * feats[:, 1]], 1)
    return 2 * rotated


def circles(rng: np.random.Generator, n: int, factor: float = 0.5, noise: float = 0.08) -> np.ndarray:
    """Two concentric circles of radii 3 and 1.5, Gaussian noise 0.08 x 3."""
    angle = rng.uniform(0, 2 * np.pi, n)
    radius = np.where(rng.integers(0, 2, n) == 0, 1.0, factor)
    pts = radius[:, None] * np.stack([np.cos(angle), np.sin(angle)], 1)
    return 3 * (pts + noise * rng.standard_normal((n, 2)))


def moons(rng: np.random.Generator, n: int, noise: float = 0.1) -> np.ndarray:
    """Two interleaving half circles, centred and scaled by 2."""
    angle = rng.uniform(0, np.pi, n)
    upper = rng.integers(0, 2, n) == 0
    x = np.where(upper, np.cos(angle), 1 - np.cos(angle))
    y = np.where(upper, np.sin(angle), 0.5 - np.sin(angle))
    pts = np.stack([x - 0.5, y - 0.25], 1) + noise * rng.standard_normal((n, 2))
    return 2 * pts


SAMPLERS: dict[str, Callable[[np.random.Generator, int], np.ndarray]] = {
    "eight_gaussians": eight_gaussians, "checkerboard": checkerboard, "two_spirals": two_spirals,
    "pinwheel": pinwheel, "circles": circles, "moons": moons,
}


def build(name: str, seed: int = 0, train_size: int = SIZES[0], test_size: int = SIZES[1]) -> dict[str, np.ndarray]:
    """Arrays of the toy density ``name``: float32 ``N x 2`` points and int64 zero labels.

    Args:
        name: a key of :data:`SAMPLERS`.
        seed: train split from ``default_rng(seed)``, test split from ``default_rng(seed + 1)``.
        train_size, test_size: numbers of points.

    Returns:
        ``x_train``, ``y_train``, ``x_test``, ``y_test``.
    """
    sample = SAMPLERS[name]
    x_train = sample(np.random.default_rng(seed), train_size).astype(np.float32)
    x_test = sample(np.random.default_rng(seed + 1), test_size).astype(np.float32)
    return {"x_train": x_train, "y_train": np.zeros(train_size, np.int64),
            "x_test": x_test, "y_test": np.zeros(test_size, np.int64)}


for _name in SAMPLERS:
    register_dataset(DatasetSpec(_name, "array", (2,), 0, SIZES, partial(build, _name)))
