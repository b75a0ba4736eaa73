"""Shake-Shake regularization (Gastaldi 2017): two residual branches mixed by random convex weights.

A block computes ``x + alpha f1(x) + (1 - alpha) f2(x)`` in the forward pass and sends the
gradient ``beta g`` and ``(1 - beta) g`` to the two branches in the backward pass. Modes (the
names of the paper's Table 1, ``<forward>-<backward>-<level>``):

- forward ``shake``: ``alpha ~ U[0, 1]``; ``even``: ``alpha = 0.5``;
- backward ``shake``: a fresh ``beta ~ U[0, 1]``; ``even``: ``beta = 0.5``; ``keep``: ``beta = alpha``;
- level ``batch``: one coefficient for the mini-batch; ``image``: one per image.

At test time ``alpha = 0.5``: the block is a forward-Euler step of the averaged vector field.
The 26-layer network has a 16-channel stem, three stages of four blocks at ``k``, ``2k``, ``4k``
channels (``2xkd``, k = 32/64/96) and downsampling shortcuts built from two shifted 1x1 convs.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from debench.registry import register_model

GAST17 = "Gastaldi. Shake-Shake regularization. arXiv 1705.07485 (ICLR 2017 workshop)"
FORWARD_MODES = ("shake", "even")
BACKWARD_MODES = ("shake", "even", "keep")
LEVELS = ("batch", "image")

#: Observers ``hook(phase, coefficient)`` called with ``("forward", alpha)`` and
#: ``("backward", beta)`` each time :class:`ShakeShakeMix` draws a coefficient (tests, debugging).
SHAKE_HOOKS: list[Callable[[str, torch.Tensor], None]] = []


def _coefficient(mode: str, ref: torch.Tensor, level: str) -> torch.Tensor:
    shape = (ref.shape[0],) + (1,) * (ref.dim() - 1) if level == "image" else (1,) * ref.dim()
    if mode == "shake":
        return torch.rand(shape, device=ref.device, dtype=ref.dtype)
    return torch.full(shape, 0.5, device=ref.device, dtype=ref.dtype)


class ShakeShakeMix(torch.autograd.Function):
    """``alpha h1 + (1 - alpha) h2`` forward; gradients ``beta g``, ``(1 - beta) g`` backward."""

    @staticmethod
    def forward(ctx, h1, h2, forward_mode: str, backward_mode: str, level: str):
        alpha = _coefficient(forward_mode, h1, level)
        ctx.save_for_backward(alpha)
        ctx.backward_mode, ctx.level = backward_mode, level
        for hook in SHAKE_HOOKS:
            hook("forward", alpha)
        return alpha * h1 + (1 - alpha) * h2

    @staticmethod
    def backward(ctx, grad):
        (alpha,) = ctx.saved_tensors
        beta = alpha if ctx.backward_mode == "keep" else _coefficient(ctx.backward_mode, grad, ctx.level)
        for hook in SHAKE_HOOKS:
            hook("backward", beta)
        return beta * grad, (1 - beta) * grad, None, None, None


class ShakeBranch(nn.Sequential):
    """ReLU-conv-BN-ReLU-conv-BN."""

    def __init__(self, in_planes: int, planes: int, stride: int):
        super().__init__(
            nn.ReLU(),
            nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False),
            nn.BatchNorm2d(planes),
            nn.ReLU(inplace=True),
            nn.Conv2d(planes, planes, 3, 1, 1, bias=False),
            nn.BatchNorm2d(planes),
        )


class ShiftedShortcut(nn.Module):
    """Gastaldi's downsampling skip: two strided 1x1 convs, the second on a one-pixel-shifted input."""

    def __init__(self, in_planes: int, planes: int, stride: int):
        super().__init__()
        self.stride = stride
        self.conv1 = nn.Conv2d(in_planes, planes // 2, 1, bias=False)
        self.conv2 = nn.Conv2d(in_planes, planes - planes // 2, 1, bias=False)
        self.bn = nn.BatchNorm2d(planes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(x)
        a = F.avg_pool2d(x, 1, self.stride)
        b = F.avg_pool2d(F.pad(x, (-1, 1, -1, 1)), 1, self.stride)
        return self.bn(torch.cat([self.conv1(a), self.conv2(b)], 1))


class ShakeShakeBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int, forward_mode: str, backward_mode: str,
                 level: str):
        super().__init__()
        self.branch1 = ShakeBranch(in_planes, planes, stride)
        self.branch2 = ShakeBranch(in_planes, planes, stride)
        self.shortcut = (nn.Identity() if stride == 1 and in_planes == planes
                         else ShiftedShortcut(in_planes, planes, stride))
        self.modes = (forward_mode, backward_mode, level)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h1, h2 = self.branch1(x), self.branch2(x)
        mixed = ShakeShakeMix.apply(h1, h2, *self.modes) if self.training else 0.5 * (h1 + h2)
        return self.shortcut(x) + mixed


class ShakeShakeNet(nn.Module):
    """Shake-Shake ResNet ``depth`` ``2 x width d`` for CIFAR.

    Args:
        depth: 6n+2 (26 in the paper: n = 4 blocks per stage).
        width: channels of the first stage (32, 64 or 96).
        num_classes, in_channels: head and stem sizes.
        forward_mode, backward_mode, level: see the module docstring.
    """

    def __init__(self, depth: int = 26, width: int = 32, num_classes: int = 10, in_channels: int = 3,
                 forward_mode: str = "shake", backward_mode: str = "shake", level: str = "image"):
        super().__init__()
        for arg, value, allowed in (("forward_mode", forward_mode, FORWARD_MODES),
                                    ("backward_mode", backward_mode, BACKWARD_MODES), ("level", level, LEVELS)):
            if value not in allowed:
                raise ValueError(f"model arg {arg!r} must be one of {allowed}, got {value!r}")
        if (depth - 2) % 6:
            raise ValueError(f"Shake-Shake depth must be 6n+2, got {depth}")
        n = (depth - 2) // 6
        self.stem = nn.Sequential(nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16))
        blocks, in_planes = [], 16
        for stage, planes in enumerate((width, 2 * width, 4 * width)):
            for j in range(n):
                stride = 2 if stage > 0 and j == 0 else 1
                blocks.append(ShakeShakeBlock(in_planes, planes, stride, forward_mode, backward_mode, level))
                in_planes = planes
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Linear(in_planes, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.blocks(self.stem(x)))
        return self.head(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


# Reference rows: Table 1 of the final version (arXiv 1705.07485) as the author's README prints it
# (xgastaldi/shake-shake@e799d87, table GAST17_REPO_T1_FINAL: 3.55 / 2.98 / 2.86 for Shake-Shake-Image,
# 2.86 being the abstract's number). GAST17_REPO_T1 holds the earlier ICLR-workshop README
# (042c07e, 2 runs), whose third column was headed 2x32d.
_REFERENCE_MODEL = {w: f"Shake-Shake ResNet 26 2x{w}d" for w in (32, 64, 96)}


def _register(width: int) -> None:
    @register_model(f"shake_shake26_2x{width}d", family="stochastic", paper=GAST17,
                    scheme="forward Euler of a randomly convex-combined two-branch vector field",
                    evals_per_forward=24,
                    reference=[{"table_id": "GAST17_REPO_T1_FINAL", "model": _REFERENCE_MODEL[width],
                                "variant": "Shake-Shake-Image"}],
                    forward_mode="shake", backward_mode="shake", level="image")
    def factory(num_classes: int = 10, in_channels: int = 3, forward_mode: str = "shake",
                backward_mode: str = "shake", level: str = "image") -> nn.Module:
        return ShakeShakeNet(26, width, num_classes, in_channels, forward_mode, backward_mode, level)

    factory.__doc__ = (f"Shake-Shake 26 2x{width}d; the reference selector is the Shake-Shake-Image row, "
                       "so change it together with the modes.")


for _w in (32, 64, 96):
    _register(_w)
