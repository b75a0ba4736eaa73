"""Reversible networks of Chang, Meng, Haber, Ruthotto, Begert, Holtham (AAAI 2018).

Three discretizations of second-order/Hamiltonian dynamics, each exactly invertible:

- ``hamiltonian``: state split in channel halves ``(Y, Z)``; a unit is one Verlet step
  ``Y += h K1^T relu(BN(K1 Z))``, ``Z -= h K2^T relu(BN(K2 Y))``;
- ``midpoint``: window ``(Y_{j-1}, Y_j)``, ``Y_{j+1} = Y_{j-1} + 2h K^T relu(BN(K Y_j))``;
- ``leapfrog``: window ``(Y_{j-1}, Y_j)``, ``Y_{j+1} = 2Y_j - Y_{j-1} - h^2 K^T relu(BN(K Y_j))``.

Stem 3x3 conv to 32 channels + BN + ReLU, three stages of 32/64/112 channels, final BN-ReLU,
global pool, linear. Between stages the state is average-pooled and zero-padded (no
parameters); the two-step schemes restart with ``Y_{-1} = Y_0``. A unit holds 4 conv
applications (two ``K``/``K^T`` pairs; the two-step schemes take two steps per unit), so
depth = 4 x units + 2: 38 -> 3-3-3 units, 74 -> 6-6-6, 110 -> 9-9-9. BN's shift plays the bias
``b``. Each stage is one :class:`ReversibleSequence` (only its output is stored).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from debench.models.discrete.layers import SymmetricLayer, pool_pad
from debench.models.discrete.resnet import CifarResNet
from debench.models.discrete.reversible import ReversibleSequence
from debench.models.discrete.units import leapfrog_unit, midpoint_unit, verlet_unit
from debench.registry import register_model

CHANG18 = "Chang, Meng, Haber, Ruthotto, Begert, Holtham. Reversible Architectures for Arbitrarily Deep Residual Neural Networks. AAAI 2018"
SCHEMES = {"hamiltonian": "Verlet (symplectic, Hamiltonian)", "midpoint": "explicit midpoint (two-step)",
           "leapfrog": "leapfrog (second-order)"}


def _unit(kind: str, width: int, h: float) -> list:
    if kind == "hamiltonian":
        return verlet_unit(SymmetricLayer(width // 2), SymmetricLayer(width // 2), h)
    step = midpoint_unit if kind == "midpoint" else leapfrog_unit
    return step(SymmetricLayer(width), h) + step(SymmetricLayer(width), h)


class ChangNet(nn.Module):
    """Reversible Hamiltonian / midpoint / leapfrog CNN.

    Args:
        kind: ``hamiltonian``, ``midpoint`` or ``leapfrog``.
        depth: 4 x units + 2, units split evenly over three stages.
        widths: stem and stage channels.
        h: step size.
        invertible: memory-saving backward (True) or plain autograd (False).
    """

    def __init__(self, kind: str, depth: int, num_classes: int = 10, in_channels: int = 3,
                 widths: tuple[int, ...] = (32, 32, 64, 112), h: float = 0.5, invertible: bool = True):
        super().__init__()
        if (depth - 2) % 12:
            raise ValueError(f"depth must be 12n+2, got {depth}")
        n = (depth - 2) // 12
        self.kind, self.widths = kind, widths
        self.stem = nn.Sequential(nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True))
        self.stages = nn.ModuleList(
            ReversibleSequence([s for _ in range(n) for s in _unit(kind, w, h)], invertible) for w in widths[1:])
        self.final = nn.Sequential(nn.BatchNorm2d(widths[-1]), nn.ReLU(inplace=True))
        self.head = nn.Linear(widths[-1], num_classes)
        CifarResNet.reset_parameters(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.stem(x)
        for s, (stage, w) in enumerate(zip(self.stages, self.widths[1:])):
            if self.kind == "hamiltonian":
                a, b = (pool_pad(t, w // 2, 2 if s else 1) for t in torch.chunk(y, 2, dim=1))
                a, b = stage(a, b)
                y = torch.cat([a, b], dim=1)
            else:
                y = pool_pad(y, w, 2 if s else 1)
                _, y = stage(y, y)
        y = self.final(y)
        return self.head(torch.flatten(F.adaptive_avg_pool2d(y, 1), 1))


def _register(kind: str, depth: int) -> None:
    @register_model(f"{kind}{depth}", family="discrete", paper=CHANG18, scheme=SCHEMES[kind],
                    evals_per_forward=2 * 3 * ((depth - 2) // 12))
    def factory(num_classes: int = 10, in_channels: int = 3, h: float = 0.5, invertible: bool = True) -> nn.Module:
        return ChangNet(kind, depth, num_classes, in_channels, h=h, invertible=invertible)

    factory.__doc__ = f"Reversible {kind} network of depth {depth} (Chang et al. 2018)."


for _kind in SCHEMES:
    for _depth in (38, 74, 110):
        _register(_kind, _depth)
