"""Momentum ResNets (Sander, Ablin, Blondel, Peyre, ICML 2021).

``v_{n+1} = gamma v_n + (1 - gamma) f(x_n)``, ``x_{n+1} = x_n + v_{n+1}`` with ``gamma = 0.9``:
a second-order ODE discretized so that each step inverts exactly,
``x_n = x_{n+1} - v_{n+1}``, ``v_n = (v_{n+1} - (1 - gamma) f(x_n)) / gamma``.

As in the official ``transform_to_momentumnet`` (``keep_first_layer=True``), the first block of
each stage stays an ordinary residual block (it changes resolution/width); the other blocks of a
stage run as momentum steps with ``v = 0`` at the stage start, the residual function ``f`` being
the ResNet branch (conv-BN-ReLU-conv-BN). With ``invertible=True`` each stage's momentum steps
form one :class:`ReversibleSequence` (only ``(x, v)`` at its end is stored). Parameters are
exactly those of the matching ResNet. ``momentum_resnet{20..110}`` use the CIFAR ResNet of He et
al. (option-A shortcuts); ``momentum_resnet18`` the 4-stage 64-512 channel ResNet-18 with 1x1
projection shortcuts commonly used on CIFAR.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from debench.models.discrete.resnet import BasicBlock, BasicBranch, CifarResNet
from debench.models.discrete.reversible import ReversibleSequence
from debench.models.discrete.units import momentum_unit
from debench.registry import register_model

SANDER21 = "Sander, Ablin, Blondel, Peyre. Momentum Residual Neural Networks. ICML 2021"


class ProjectionBlock(nn.Module):
    """ResNet-18 basic block with a 1x1 conv + BN shortcut when the shape changes."""

    def __init__(self, in_planes: int, planes: int, stride: int):
        super().__init__()
        self.branch = BasicBranch(in_planes, planes, stride)
        self.shortcut = nn.Identity() if stride == 1 and in_planes == planes else nn.Sequential(
            nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.shortcut(x) + self.branch(x))


class MomentumStage(nn.Module):
    """One plain first block, then ``n - 1`` momentum steps starting from ``v = 0``."""

    def __init__(self, first: nn.Module, planes: int, n: int, gamma: float, invertible: bool):
        super().__init__()
        self.first = first
        shears = [s for _ in range(n - 1) for s in momentum_unit(BasicBranch(planes, planes), gamma)]
        self.steps = ReversibleSequence(shears, invertible) if shears else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.first(x)
        if self.steps is not None:
            x, _ = self.steps(x, torch.zeros_like(x))
        return x


class MomentumResNet(nn.Module):
    """Stem, momentum stages, global pool, linear head.

    Args:
        units: blocks per stage.
        widths: stem and stage channels.
        projection: ResNet-18 style 1x1 shortcuts (True) or option-A shortcuts (False).
        gamma: momentum.
        invertible: memory-saving backward (True) or plain autograd (False).
    """

    def __init__(self, units, widths, num_classes=10, in_channels=3, projection=False, gamma=0.9, invertible=False):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True))
        block = ProjectionBlock if projection else BasicBlock
        stages, cin = [], widths[0]
        for s, (n, w) in enumerate(zip(units, widths[1:])):
            stages.append(MomentumStage(block(cin, w, 2 if s else 1), w, n, gamma, invertible))
            cin = w
        self.stages = nn.Sequential(*stages)
        self.head = nn.Linear(cin, num_classes)
        CifarResNet.reset_parameters(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem(x))
        return self.head(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def _register(depth: int) -> None:
    if depth == 18:
        units, widths, projection = (2, 2, 2, 2), (64, 64, 128, 256, 512), True
    else:
        units, widths, projection = ((depth - 2) // 6,) * 3, (16, 16, 32, 64), False

    # No reference rows: the only published Momentum ResNet CIFAR rows (SANDER21_PWC) state no
    # depth, and a row may be compared only with a run of the same depth and dataset.
    @register_model(f"momentum_resnet{depth}", family="discrete", paper=SANDER21,
                    scheme="momentum (second-order, invertible)", evals_per_forward=sum(units), reference=[],
                    baseline=None if depth == 18 else f"resnet{depth}")  # Sander et al.: against the ResNet
    def factory(num_classes: int = 10, in_channels: int = 3, gamma: float = 0.9, invertible: bool = False) -> nn.Module:
        return MomentumResNet(units, widths, num_classes, in_channels, projection, gamma, invertible)

    factory.__doc__ = f"Momentum ResNet-{depth} (stages {list(units)}, widths {list(widths[1:])})."


for _depth in (18, 20, 32, 44, 56, 110):
    _register(_depth)
