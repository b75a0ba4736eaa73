"""Layers shared by the discrete family: symmetric layer, TV normalization, pool-and-pad, BN guard."""

from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.modules.batchnorm import _BatchNorm


class TVNorm(nn.Module):
    """Total-variation normalization of Ruthotto & Haber: each pixel's feature vector divided by its length.

    ``y = x / sqrt(sum_c x^2 + eps)`` with ``eps = 1e-4`` (no centering, a sum over the channels),
    then a learnable per-channel scale (init 1) and shift (init 0): ``2 * channels`` parameters.
    This is Meganet's ``tvNormLayer`` (XtractOpen/Meganet.m@4f9fdbc ``layers/tvNormLayer.m``:
    ``Y./sqrt(sum(Y.^2,3)+this.eps)``, default ``eps = 1e-4``, used with ``'isWeight',1`` by
    ``examples/2018-jmiv/cnnDriver.m``). Until issue 27 debench centred ``x`` over the channels,
    averaged instead of summing and used ``eps = 1e-3``.
    """

    def __init__(self, channels: int, eps: float = 1e-4):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x * torch.rsqrt(x.pow(2).sum(1, keepdim=True) + self.eps)
        return x * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)


class SymmetricLayer(nn.Module):
    """``u -> K^T relu(N(K u))`` with one 3x3 kernel ``K`` used forward and transposed.

    Its Jacobian is symmetric positive semi-definite, so ``-K^T relu(N(K u))`` is the stable
    (parabolic) right-hand side of Ruthotto & Haber and the force of Chang et al.'s
    second-order and Hamiltonian networks.

    Args:
        channels: input = output channels.
        norm: ``"bn"`` (BatchNorm, affine) or ``"tv"`` (:class:`TVNorm`).
    """

    def __init__(self, channels: int, norm: str = "bn"):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(channels, channels, 3, 3))
        nn.init.kaiming_normal_(self.weight, mode="fan_out", nonlinearity="relu")
        self.norm = TVNorm(channels) if norm == "tv" else nn.BatchNorm2d(channels)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        z = F.relu(self.norm(F.conv2d(u, self.weight, padding=1)))
        return F.conv_transpose2d(z, self.weight, padding=1)


def pool_pad(x: torch.Tensor, channels: int, stride: int = 2) -> torch.Tensor:
    """Parameter-free downsampling: ``stride`` average pooling, then zero channels on both sides."""
    if stride > 1:
        x = F.avg_pool2d(x, stride)
    extra = channels - x.shape[1]
    return F.pad(x, (0, 0, 0, 0, extra // 2, extra - extra // 2)) if extra else x


@contextmanager
def frozen_bn_stats(module: nn.Module | None):
    """Restore BatchNorm running statistics on exit: recomputation must not count a batch twice."""
    bns = [m for m in module.modules() if isinstance(m, _BatchNorm) and m.training
           and m.track_running_stats] if module is not None else []
    saved = [[t.clone() for t in (m.running_mean, m.running_var, m.num_batches_tracked)] for m in bns]
    try:
        yield
    finally:
        for m, (mean, var, n) in zip(bns, saved):
            m.running_mean.copy_(mean), m.running_var.copy_(var), m.num_batches_tracked.copy_(n)
