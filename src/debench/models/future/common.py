"""The CIFAR frame the delay, fractional and higher-order blocks sit in: ODE-Net CIFAR's.

Stem conv, one continuous block per stage, residual stride-2 transitions, GN-ReLU-pool-linear
head (:func:`debench.models.continuous.odenet.odenet_cifar`), so the new families differ from the
Neural ODE row of the report only in their block.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn

from debench.models.continuous.blocks import ConcatConv2d, group_norm
from debench.models.continuous.odenet import ODENet, PreActBlock, head

class ConvField(nn.Module):
    """ODE-Net's f with ``k * dim`` input channels: GN-ReLU-ConcatConv(k*dim -> dim)-GN-ReLU-ConcatConv-GN.

    With ``k = 1`` it is :class:`~debench.models.continuous.blocks.ConvODEFunc`; the delay field
    takes ``(h(t), h(t - tau))`` (k = 2), a third-order field ``(x, x', x'')`` (k = 3).
    """

    def __init__(self, dim: int, k: int = 1):
        super().__init__()
        # groups never straddle two of the k concatenated states, which may differ in scale
        self.norm1 = nn.GroupNorm(k * min(32, dim), k * dim)
        self.conv1 = ConcatConv2d(k * dim, dim)
        self.norm2, self.conv2 = group_norm(dim), ConcatConv2d(dim, dim)
        self.norm3 = group_norm(dim)

    def forward(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(t, torch.relu(self.norm1(x)))
        return self.norm3(self.conv2(t, torch.relu(self.norm2(out))))


class FutureNet(ODENet):
    """ODE-Net's frame whose blocks may report extra evaluation metrics (``extra_metrics()``)."""

    def extra_eval_metrics(self, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> dict[str, float]:
        """Per-forward counters of the blocks (history terms, stored states), summed over blocks."""
        out: dict[str, float] = {}
        for block in self.blocks:
            for k, v in getattr(block, "extra_metrics", dict)().items():
                out[k] = out.get(k, 0.0) + v
        return out


def cifar_net(make_block: Callable[[int], nn.Module], widths, num_classes: int, in_channels: int) -> FutureNet:
    """ODE-Net CIFAR's frame around ``make_block(width)`` in each stage.

    Args:
        make_block: builds the continuous block of a stage from its channel count.
        widths: channels per stage; ``(8, 16)`` for smoke runs.
        num_classes, in_channels: head and stem sizes.

    Returns:
        The classifier (its ``debench_stats`` sums the blocks' counted evaluations).
    """
    widths = tuple(int(w) for w in widths)
    stem = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
    transitions = [PreActBlock(a, b, stride=2) for a, b in zip(widths, widths[1:])]
    return FutureNet(stem, [make_block(w) for w in widths], transitions, head(widths[-1], num_classes))
