"""Measurements that mean the same on every device: autograd's saved bytes, parameter counts, CUDA peak memory."""

from __future__ import annotations

import copy
import resource
from typing import Callable

import torch
import torch.nn as nn


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters of ``model``."""
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


def activation_probe_bytes(model: nn.Module, loss_of: Callable[[nn.Module], torch.Tensor]) -> int | None:
    """Saved bytes of one fp32 training forward of a copy of ``model``.

    The copy keeps the model's BN statistics and counters untouched; autocast is switched off
    inside, so the figure is fp32 whatever precision the run trains in (the papers' figures are
    fp32); the RNG states are restored, so the probe does not shift the run's random stream.

    Args:
        model: the model (not modified).
        loss_of: ``loss_of(module) -> loss`` runs one training forward of ``module``.

    Returns:
        The bytes, or ``None`` when the forward fails with a recorded failure
        (:class:`debench.errors.RunFailed`, e.g. a solver passing its step cap).
    """
    import random

    from debench.errors import RunFailed

    probe = copy.deepcopy(model).train()
    device = next(iter(probe.parameters()), torch.zeros(())).device
    rng = (torch.get_rng_state(), random.getstate(),
           torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None)
    try:
        with torch.autocast(device.type, enabled=False):
            return saved_activation_bytes(lambda: loss_of(probe), exclude=list(probe.parameters()))
    except RunFailed:
        return None
    finally:
        torch.set_rng_state(rng[0])
        random.setstate(rng[1])
        if rng[2] is not None:
            torch.cuda.set_rng_state_all(rng[2])


def training_step_activation_bytes(model: nn.Module, x: torch.Tensor, loss_of_output: Callable) -> int:
    """Saved bytes of one fp32 training forward of a copy of ``model`` (see :func:`activation_probe_bytes`)."""
    return activation_probe_bytes(model, lambda m: loss_of_output(m(x)))


def peak_memory_bytes(device: torch.device) -> int | None:
    """CUDA: ``max_memory_allocated`` since the last reset, what the run's tensors held at most.

    CPU: None. The only CPU figure torch offers is the process's peak resident set, which counts
    the interpreter and every imported library, and differs between a process of its own and a
    child of the fork server (shared pages of the server's imports); it is no figure of the model.
    It is recorded apart, labelled as such, as ``provenance.process_peak_rss_mb``
    (:func:`process_peak_rss_bytes`).
    """
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    return None


def peak_memory_mb(device: torch.device) -> float | None:
    """:func:`peak_memory_bytes` in MiB (None on CPU)."""
    peak = peak_memory_bytes(device)
    return None if peak is None else peak / 2**20


def process_peak_rss_bytes() -> int:
    """This process's peak resident set size (``getrusage`` ``ru_maxrss``; Linux reports KiB)."""
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024
