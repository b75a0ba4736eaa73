"""FractalNet (Larsson, Maire, Shakhnarovich, ICLR 2017): a fractal of conv columns.

``f_1(z) = conv(z)``, ``f_{C+1}(z) = join(f_C(f_C(z)), conv(z))`` with ``join`` the mean of
its inputs; ``B`` blocks of ``f_C``, each followed by 2x2 max pooling, then a linear
classifier. Column ``c`` of a block is ``2^(c-1)`` convs deep, the shortest a one-step and the
longest a ``2^(C-1)``-step path: Lu et al. 2018 read the join as an averaging of schemes of
different order. Drop-path regularizes training: each join drops each input with probability
``drop_path`` (keeping at least one), and with probability ``global_ratio`` a batch instead uses
one column chosen at random for the whole network.

The paper's CIFAR network is C = 4, B = 5 (40 conv layers) with 64-128-256-512-512 channels.
The registered ``fractalnet20`` is C = 3, B = 5 (20 layers) at a quarter of the width
(16-32-64-128-128) so that the CPU smoke preset stays fast; ``columns`` and ``width`` are model
arguments (``{columns: 4, width: 64}`` is the paper's network).
"""

from __future__ import annotations

import random

import torch
import torch.nn as nn
import torch.nn.functional as F

from debench.registry import register_model

LARSSON17 = "Larsson, Maire, Shakhnarovich. FractalNet: Ultra-Deep Neural Networks without Residuals. ICLR 2017"


def conv_unit(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class Fractal(nn.Module):
    """``f_C``: the shortcut conv joined with two stacked ``f_{C-1}``."""

    def __init__(self, cin: int, cout: int, columns: int):
        super().__init__()
        self.columns, self.short = columns, conv_unit(cin, cout)
        self.deep = nn.Sequential(Fractal(cin, cout, columns - 1), Fractal(cout, cout, columns - 1)) \
            if columns > 1 else None

    def forward(self, x: torch.Tensor, drop: float, column: int | None) -> torch.Tensor:
        if self.deep is None:
            return self.short(x)
        if column is not None:  # global drop-path: keep one column, chosen by depth index
            if column == self.columns - 1:
                return self.short(x)
            return self.deep[1](self.deep[0](x, drop, column), drop, column)
        paths = [self.short(x), self.deep[1](self.deep[0](x, drop, None), drop, None)]
        if drop > 0:
            keep = [p for p in paths if random.random() >= drop] or [random.choice(paths)]
            paths = keep
        return torch.stack(paths).mean(0)


class FractalNet(nn.Module):
    """``B`` fractal blocks with max pooling, global pool, linear head.

    Args:
        columns: C, the number of columns per block.
        width: channels of the first block (doubling per block, capped at 8x).
        blocks: B.
        drop_path: local drop probability per join input in training.
        global_ratio: fraction of training batches that use global drop-path.
    """

    def __init__(self, num_classes=10, in_channels=3, columns=3, width=16, blocks=5, drop_path=0.15, global_ratio=0.5):
        super().__init__()
        widths = [width * min(2 ** b, 8) for b in range(blocks)]
        self.blocks = nn.ModuleList(Fractal(i, o, columns) for i, o in zip([in_channels] + widths[:-1], widths))
        self.columns, self.drop_path, self.global_ratio = columns, drop_path, global_ratio
        self.head = nn.Linear(widths[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        column, drop = None, 0.0
        if self.training and self.drop_path > 0:
            if random.random() < self.global_ratio:
                column = random.randrange(self.columns)
            drop = self.drop_path
        for blk in self.blocks:
            x = F.max_pool2d(blk(x, drop, column), 2) if x.shape[-1] > 1 else blk(x, drop, column)
        return self.head(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


@register_model("fractalnet20", family="discrete", paper=LARSSON17, scheme="mixture of schemes of different depth (join)",
                evals_per_forward=5 * (2 ** 3 - 1))
def fractalnet20(num_classes: int = 10, in_channels: int = 3, width: int = 16, columns: int = 3,
                 drop_path: float = 0.15, global_ratio: float = 0.5) -> nn.Module:
    """FractalNet with C = 3 columns, B = 5 blocks (20 layers); see the module docstring."""
    return FractalNet(num_classes, in_channels, columns, width, 5, drop_path, global_ratio)
