"""Measurements that mean the same on every device: autograd's saved bytes, parameter counts."""

from __future__ import annotations

import copy
import resource
from typing import Callable

import torch
import torch.nn as nn


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def saved_activation_bytes(loss_fn: Callable[[], torch.Tensor], exclude: list[torch.Tensor] = ()) -> int:
    """Bytes autograd keeps for the backward pass while ``loss_fn()`` runs its forward.

    Every tensor packed by a saved-tensor hook is counted once per storage (views of one
    storage count once), and the tensors in ``exclude`` (the parameters) are left out, so the
    figure is the activation memory of one training step, identical on CPU and GPU. Custom
    autograd functions that store only their outputs (reversible blocks, the adjoint) are
    measured by what they actually save.

    Args:
        loss_fn: runs a forward pass and returns the loss; its graph is discarded.
        exclude: tensors not to count (typically ``model.parameters()``).

    Returns:
        The number of bytes.
    """
    seen: dict[tuple[int, int], int] = {}
    skip = {t.untyped_storage().data_ptr() for t in exclude}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        ptr = storage.data_ptr()
        if ptr not in skip and ptr != 0:
            seen[(ptr, t.device.index or 0)] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = loss_fn()
    del loss
    return sum(seen.values())


def training_step_activation_bytes(model: nn.Module, x: torch.Tensor, loss_of_output: Callable) -> int:
    """Saved bytes of one training forward of a copy of ``model`` (its BN statistics untouched)."""
    probe = copy.deepcopy(model).train()
    params = list(probe.parameters())
    return saved_activation_bytes(lambda: loss_of_output(probe(x)), exclude=params)


def peak_memory_bytes(device: torch.device) -> int:
    """CUDA: ``max_memory_allocated`` since the last reset. CPU: this process's peak RSS."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024
