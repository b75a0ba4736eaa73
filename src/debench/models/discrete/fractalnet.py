"""FractalNet (Larsson, Maire, Shakhnarovich, ICLR 2017): a fractal of conv columns.

``f_1(z) = conv(z)``, ``f_{C+1}(z) = join(f_C(f_C(z)), conv(z))``. A join that meets the end of
another join merges with it, so every join is **one element-wise mean over all the columns that
end there** (the authors' generator ``generation/fractalnet.py`` in gustavla/fractalnet emits
``join2``/``join3``/... layers over the deepest ``2 + c`` columns), not a mean of means: at the
end of a ``C = 3`` block the three columns weigh 1/3 each, where a nested mean would give the
shortest 1/2 and the two deeper 1/4. Each block ends with 2x2 max pooling applied to every
column before the final join (the generator's ``pool2`` precedes the join), then a linear
classifier on the 1x1 map.

A conv unit is the authors' ``conv`` macro (``generation/globals.crox``): 3x3 conv with bias,
dropout (rate per block ``0, 0.1, 0.2, 0.3, 0.4``), Caffe ``BatchNorm`` without a ``Scale`` layer
(no learned affine), ReLU. Local drop-path drops each join input with probability
``drop_path`` (0.15, keeping at least one); with probability ``global_ratio`` a batch instead
uses one column for the whole network. Column ``c`` of a block is ``2^(c-1)`` convs deep: Lu et
al. 2018 read the join as an average of schemes of different order.

``fractalnet20`` is the authors' generator default and the paper's 20-layer CIFAR network:
C = 3 columns, B = 5 blocks, 64-128-256-512-512 channels (33,714,314 weights, derived in
``tests/test_faithful_fractalnet.py``).
"""

from __future__ import annotations

import random

import torch
import torch.nn as nn
import torch.nn.functional as F

from debench.registry import register_model

LARSSON17 = "Larsson, Maire, Shakhnarovich. FractalNet: Ultra-Deep Neural Networks without Residuals. ICLR 2017"
WIDTHS = (64, 128, 256, 512, 512)
DROPOUTS = (0.0, 0.1, 0.2, 0.3, 0.4)


def conv_unit(cin: int, cout: int, dropout: float) -> nn.Sequential:
    """The authors' ``conv`` macro: conv (bias) -> dropout -> BN (no affine) -> ReLU."""
    return nn.Sequential(nn.Conv2d(cin, cout, 3, 1, 1), nn.Dropout(dropout),
                         nn.BatchNorm2d(cout, affine=False), nn.ReLU(inplace=True))


def join(paths: list[torch.Tensor], drop: float) -> torch.Tensor:
    """Element-wise mean of ``paths``; in training each is dropped with probability ``drop``."""
    if drop > 0 and len(paths) > 1:
        paths = [p for p in paths if random.random() >= drop] or [random.choice(paths)]
    return paths[0] if len(paths) == 1 else torch.stack(paths).mean(0)


class Fractal(nn.Module):
    """``f_C`` returning its ``C`` column outputs *before* the final join (shortest first)."""

    def __init__(self, cin: int, cout: int, columns: int, dropout: float = 0.0):
        super().__init__()
        self.columns, self.short = columns, conv_unit(cin, cout, dropout)
        self.deep = nn.ModuleList([Fractal(cin, cout, columns - 1, dropout),
                                   Fractal(cout, cout, columns - 1, dropout)]) if columns > 1 else None

    def forward(self, x: torch.Tensor, drop: float, column: int | None) -> list[torch.Tensor]:
        if self.deep is None or column == 0:
            return [self.short(x)]
        inner = None if column is None else column - 1
        mid = join(self.deep[0](x, drop, inner), drop)
        deep = self.deep[1](mid, drop, inner)
        return deep if column is not None else [self.short(x)] + deep


class FractalNet(nn.Module):
    """``B`` fractal blocks (each column max-pooled, then joined), linear head.

    Args:
        num_classes, in_channels: head and input sizes.
        columns: C, the number of columns per block.
        widths: channels of each block (its length is B).
        dropouts: dropout rate of the convs of each block.
        drop_path: local drop probability per join input in training.
        global_ratio: fraction of training batches that use global drop-path.

    Raises:
        ValueError: if ``widths`` and ``dropouts`` differ in length or ``columns < 1``.
    """

    def __init__(self, num_classes=10, in_channels=3, columns=3, widths=WIDTHS, dropouts=DROPOUTS,
                 drop_path=0.15, global_ratio=0.5):
        super().__init__()
        if len(widths) != len(dropouts) or columns < 1:
            raise ValueError(f"FractalNet: model args 'widths' ({len(widths)}) and 'dropouts' ({len(dropouts)}) "
                             f"must have one entry per block, and 'columns' >= 1 (got {columns})")
        self.blocks = nn.ModuleList(Fractal(i, o, columns, d) for i, o, d in
                                    zip([in_channels] + list(widths[:-1]), widths, dropouts))
        self.columns, self.drop_path, self.global_ratio = columns, drop_path, global_ratio
        self.head = nn.Linear(widths[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        column, drop = None, 0.0
        if self.training and self.drop_path > 0:
            if random.random() < self.global_ratio:
                column = random.randrange(self.columns)
            drop = self.drop_path
        for blk in self.blocks:
            cols = blk(x, drop, column)
            if x.shape[-1] > 1:
                cols = [F.max_pool2d(c, 2) for c in cols]
            x = join(cols, drop)
        return self.head(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


# Table 1's 20-layer row lists 38.6M parameters; this layout counts 33.7M, and the same layout
# at a quarter of the width counts 2.1M, which is exactly Table 3's C = 3 row (16-32-64-128-128
# channels): tests/test_faithful_fractalnet.py pins both. The accuracy compared is Table 1's
# drop-path + dropout network under standard augmentation, the protocol trained here.
@register_model("fractalnet20", family="discrete", paper=LARSSON17, scheme="mixture of schemes of different depth (join)",
                evals_per_forward=5 * (2 ** 3 - 1),
                reference=[{"table_id": "LARSSON17_T1", "model": "FractalNet", "depth": "20",
                            "variant": "drop-path + dropout; standard augmentation (+)"}])
def fractalnet20(num_classes: int = 10, in_channels: int = 3, width: int = 64, columns: int = 3,
                 drop_path: float = 0.15, global_ratio: float = 0.5, dropout: bool = True) -> nn.Module:
    """The paper's 20-layer CIFAR FractalNet (C = 3, B = 5, 64-128-256-512-512 channels).

    Args:
        num_classes, in_channels: head and input sizes.
        width: channels of the first block; the others keep the authors' ratios 1-2-4-8-8
            (64 is the authors' network; smaller values only for smoke tests).
        columns: C (3 in the authors' generator).
        drop_path, global_ratio: local and global drop-path.
        dropout: use the authors' per-block dropout 0-0.4 (false: none).

    Returns:
        The :class:`FractalNet`.
    """
    widths = tuple(width * w // 64 for w in WIDTHS)
    return FractalNet(num_classes, in_channels, columns, widths, DROPOUTS if dropout else (0.0,) * 5,
                      drop_path, global_ratio)
