"""Array datasets of the stochastic family: sample paths of SDEs and a 2-D Gaussian mixture.

All are generated from a seed (``debench prepare-data`` caches them like the image sets):

- ``ou_paths`` (``N x 50 x 1``): Ornstein-Uhlenbeck paths ``dX = theta (mu - X) dt + s dW`` on
  ``t in [0, 1]``, sampled with the exact Gaussian transition, ``X_0 ~ N(0, 1)``.
- ``lorenz`` (``N x 100 x 3``): the stochastic Lorenz system of Li, Wong, Chen, Duvenaud 2020
  (Sec. 9.6 of the arXiv version: ``(sigma, rho, beta) = (10, 28, 8/3)``, multiplicative noise
  ``0.15 * state``), Euler-Maruyama at ``dt = 1e-3`` on ``[0, 1]``, 100 observation times,
  normalized per dimension with the train split's mean/std, plus N(0, 0.01^2) observation noise.
- ``toy_gmm2d`` (``N x 2``): eight Gaussians (std 0.25) on the circle of radius 2, equal
  weights; :func:`gmm2d_log_density` is its exact log-density (for NLL checks of score models).

Time grids are not stored: series models take ``t_end`` (1.0 for both) as a model argument.
"""

from __future__ import annotations

import math

import numpy as np

from debench.data.cache import DatasetSpec, register_dataset

OU = {"theta": 2.0, "mu": 0.5, "sigma": 0.5, "length": 50, "t_end": 1.0}
LORENZ = {"sigma": 10.0, "rho": 28.0, "beta": 8.0 / 3.0, "noise": (0.15, 0.15, 0.15), "length": 100,
          "t_end": 1.0, "dt": 1e-3, "obs_std": 0.01}
GMM2D = {"components": 8, "radius": 2.0, "std": 0.25}


def _pack(x_train: np.ndarray, x_test: np.ndarray) -> dict[str, np.ndarray]:
    return {
        "x_train": x_train.astype(np.float32), "y_train": np.zeros(len(x_train), np.int64),
        "x_test": x_test.astype(np.float32), "y_test": np.zeros(len(x_test), np.int64),
    }


def ou_paths(n: int, rng: np.random.Generator, theta: float = OU["theta"], mu: float = OU["mu"],
             sigma: float = OU["sigma"], length: int = OU["length"], t_end: float = OU["t_end"]) -> np.ndarray:
    """``n`` OU paths at ``length`` equally spaced times of ``[0, t_end]``, shape ``n x length x 1``."""
    dt = t_end / (length - 1)
    decay = math.exp(-theta * dt)
    step_std = sigma * math.sqrt((1 - decay**2) / (2 * theta))
    x = np.empty((n, length), np.float64)
    x[:, 0] = rng.standard_normal(n)
    for i in range(1, length):
        x[:, i] = mu + (x[:, i - 1] - mu) * decay + step_std * rng.standard_normal(n)
    return x[:, :, None]


def build_ou(seed: int, train_size: int, test_size: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return _pack(ou_paths(train_size, rng), ou_paths(test_size, rng))


def lorenz_paths(n: int, rng: np.random.Generator) -> np.ndarray:
    """Raw (unnormalized) stochastic Lorenz paths, shape ``n x length x 3``."""
    p = LORENZ
    interval = p["t_end"] / (p["length"] - 1)
    substeps = max(1, round(interval / p["dt"]))
    dt = interval / substeps
    alpha = np.asarray(p["noise"])
    y = rng.standard_normal((n, 3))
    out = np.empty((n, p["length"], 3))
    out[:, 0] = y
    sq = math.sqrt(dt)
    for i in range(1, p["length"]):
        for _ in range(substeps):
            x1, x2, x3 = y[:, 0], y[:, 1], y[:, 2]
            drift = np.stack([p["sigma"] * (x2 - x1), x1 * (p["rho"] - x3) - x2, x1 * x2 - p["beta"] * x3], 1)
            y = y + drift * dt + alpha * y * sq * rng.standard_normal((n, 3))
        out[:, i] = y
    return out


def build_lorenz(seed: int, train_size: int, test_size: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    train, test = lorenz_paths(train_size, rng), lorenz_paths(test_size, rng)
    mean, std = train.mean(axis=(0, 1)), train.std(axis=(0, 1))
    train, test = (train - mean) / std, (test - mean) / std
    train = train + LORENZ["obs_std"] * rng.standard_normal(train.shape)
    test = test + LORENZ["obs_std"] * rng.standard_normal(test.shape)
    return _pack(train, test)


def _gmm_centers() -> np.ndarray:
    k = GMM2D["components"]
    angles = 2 * np.pi * np.arange(k) / k
    return GMM2D["radius"] * np.stack([np.cos(angles), np.sin(angles)], 1)


def gmm2d_sample(n: int, rng: np.random.Generator) -> np.ndarray:
    centers = _gmm_centers()
    return centers[rng.integers(0, len(centers), n)] + GMM2D["std"] * rng.standard_normal((n, 2))


def gmm2d_log_density(x: np.ndarray) -> np.ndarray:
    """Exact log-density of ``toy_gmm2d`` at points ``x`` (``n x 2``), in nats."""
    centers, s = _gmm_centers(), GMM2D["std"]
    d2 = ((x[:, None, :] - centers[None]) ** 2).sum(-1)
    logs = -d2 / (2 * s * s) - math.log(2 * math.pi * s * s) - math.log(len(centers))
    m = logs.max(1, keepdims=True)
    return (m + np.log(np.exp(logs - m).sum(1, keepdims=True)))[:, 0]


def build_gmm2d(seed: int, train_size: int, test_size: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return _pack(gmm2d_sample(train_size, rng), gmm2d_sample(test_size, rng))


register_dataset(DatasetSpec("ou_paths", "array", (OU["length"], 1), 0, (1024, 256), build_ou))
register_dataset(DatasetSpec("lorenz", "array", (LORENZ["length"], 3), 0, (1024, 256), build_lorenz))
register_dataset(DatasetSpec("toy_gmm2d", "array", (2,), 0, (20000, 5000), build_gmm2d))
