"""The whole dataset resident on the training device, augmented there in batches.

No DataLoader and no worker processes: uint8 images move to the device once; each batch is
gathered by index, randomly cropped (zero padding) and flipped by tensor ops, converted to float,
normalized with the train-split statistics and laid out channels_last. The same code runs on the
CPU and on CUDA, and its randomness comes only from the generator the caller passes, so an epoch
is reproducible from ``(seed, epoch)`` alone.
"""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np
import torch


class DeviceData:
    """Train/validation/test tensors on ``device``.

    Args:
        arrays: ``x_train``, ``y_train``, ``x_test``, ``y_test`` from the cache.
        meta: the cache sidecar (kind, mean, std).
        device: where the tensors live.
        val_fraction: share of the train split held out for validation (a seeded permutation
            decides which examples); 0 keeps the standard split.
        split_seed: seed of that permutation.
        normalize: image datasets only; False hands images to the model in [0, 1].
        norm: ``channel`` subtracts the per-channel train mean and divides by the per-channel
            std (the cache sidecar's); ``pixel_mean`` subtracts the per-pixel mean image of the
            train split and divides by nothing (He et al. 2016, Section 4.2: "the per-pixel
            mean subtracted").
    """

    def __init__(self, arrays: dict[str, np.ndarray], meta: dict[str, Any], device: torch.device,
                 val_fraction: float = 0.0, split_seed: int = 0, normalize: bool = True,
                 norm: str = "channel"):
        self.device = torch.device(device)
        self.kind = meta.get("kind", "image")
        self.meta = meta
        x, y = arrays["x_train"], arrays["y_train"]
        n_val = int(round(len(y) * val_fraction))
        if n_val:
            perm = np.random.default_rng(split_seed).permutation(len(y))
            val_idx, train_idx = np.sort(perm[:n_val]), np.sort(perm[n_val:])
            self.x_val, self.y_val = self._put(x[val_idx]), self._put(y[val_idx])
            x, y = x[train_idx], y[train_idx]
        else:
            self.x_val = self.y_val = None
        self.x_train, self.y_train = self._put(x), self._put(y)
        self.x_test, self.y_test = self._put(arrays["x_test"]), self._put(arrays["y_test"])
        self.normalize = normalize and self.kind == "image"
        if self.kind == "image" and norm == "pixel_mean":
            # mean image of the train split actually trained on (validation examples excluded)
            # summed in chunks: one float64 copy of 50k images would be 1.2 GB at start-up
            total = sum(chunk.sum(0, dtype=torch.float64) for chunk in self.x_train.split(4096))
            mean = total.div_(255.0 * len(self.x_train))  # H, W, C
            self.mean = mean.permute(2, 0, 1).unsqueeze(0).to(torch.float32)
            self.std = torch.ones(1, mean.shape[-1], 1, 1, device=self.device)
        elif self.kind == "image":
            if norm != "channel":
                raise ValueError(f"norm: must be 'channel' or 'pixel_mean', got {norm!r}")
            self.mean = torch.tensor(meta["mean"], dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
            self.std = torch.tensor(meta["std"], dtype=torch.float32, device=self.device).view(1, -1, 1, 1)

    def _put(self, a: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(np.ascontiguousarray(a))
        if t.dtype == torch.int64 or t.dtype == torch.uint8 and t.ndim == 1:
            t = t.long()
        return t.to(self.device)

    @property
    def num_train(self) -> int:
        return len(self.y_train)

    def steps_per_epoch(self, batch_size: int) -> int:
        return -(-self.num_train // batch_size)

    def to_model_input(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 NHWC -> float NCHW (channels_last memory), normalized if configured."""
        if self.kind != "image":
            return x
        x = x.permute(0, 3, 1, 2).float().div_(255.0)
        if self.normalize:
            x = (x - self.mean) / self.std
        return x.contiguous(memory_format=torch.channels_last)

    def train_batches(self, batch_size: int, generator: torch.Generator, crop_padding: int = 0,
                      flip: bool = False) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One epoch of shuffled, augmented batches (the last batch may be smaller)."""
        perm = torch.randperm(self.num_train, device=self.device, generator=generator)
        for start in range(0, self.num_train, batch_size):
            idx = perm[start:start + batch_size]
            x = self.x_train[idx]
            if self.kind == "image" and (crop_padding or flip):
                x = augment(x, generator, crop_padding, flip)
            yield self.to_model_input(x), self.y_train[idx]

    def eval_batches(self, split: str, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        x_all, y_all = (self.x_test, self.y_test) if split == "test" else (self.x_val, self.y_val)
        for start in range(0, len(y_all), batch_size):
            yield self.to_model_input(x_all[start:start + batch_size]), y_all[start:start + batch_size]


def augment(x: torch.Tensor, generator: torch.Generator, padding: int, flip: bool) -> torch.Tensor:
    """Random crop with zero padding and random horizontal flip of a uint8 NHWC batch.

    Every image gets its own offset in ``[-padding, padding]`` and its own flip decision; the
    crop is one gather over precomputed row/column indices, so it costs one kernel per batch.
    """
    n, h, w, _ = x.shape
    dev = x.device
    if padding:
        x = torch.nn.functional.pad(x, (0, 0, padding, padding, padding, padding))
        dy = torch.randint(0, 2 * padding + 1, (n,), device=dev, generator=generator)
        dx = torch.randint(0, 2 * padding + 1, (n,), device=dev, generator=generator)
        rows = (torch.arange(h, device=dev)[None, :] + dy[:, None])[:, :, None]
        cols = (torch.arange(w, device=dev)[None, :] + dx[:, None])[:, None, :]
        x = x[torch.arange(n, device=dev)[:, None, None], rows, cols]
    if flip:
        mask = torch.rand(n, device=dev, generator=generator) < 0.5
        x = torch.where(mask[:, None, None, None], x.flip(2), x)
    return x
