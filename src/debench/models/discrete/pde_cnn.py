"""PDE-CNNs of Ruthotto & Haber (JMIV 2020): parabolic, Hamiltonian and second-order networks.

Layout of the paper's Meganet driver (``cnnDriver``): opening 3x3 conv + BN + ReLU to ``nf[0]``
channels, then per stage ``k`` a PDE block of ``nt = 3`` steps (step ``h = 1``) at ``nf[k]``
channels and a connector (1x1 conv to ``nf[k+1]`` + BN + ReLU, 2x average pooling, global
pooling after the last), then a linear classifier. Every step has its own symmetric layer
``K^T relu(N(K Y))`` with total-variation normalization ``N`` (eps = 1e-3):

- parabolic: forward Euler on ``Y' = -K^T relu(N(K Y))``;
- second-order: leapfrog ``Y_{j+1} = 2Y_j - Y_{j-1} - h^2 K^T relu(N(K Y_j))``, ``Y_{-1} = Y_0``;
- Hamiltonian: channels split into ``(Y, Z)`` halves, ``nt`` Verlet steps with two layers each.

Widths: ``nf = [32, 64, 112, 112]`` for 10 classes and ``[32, 64, 128, 256]`` for more
(CIFAR-100); both reproduce the parameter counts of the paper's Table 1 exactly.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from debench.models.discrete.layers import SymmetricLayer
from debench.models.discrete.schemes import leapfrog_step, verlet_step
from debench.registry import register_model

RUTHOTTO20 = "Ruthotto, Haber. Deep Neural Networks Motivated by Partial Differential Equations. JMIV 2020"
KINDS = {"parabolic": ("forward Euler (parabolic PDE)", "Parabolic CNN"),
         "hamiltonian": ("Verlet (symplectic, Hamiltonian PDE)", "Hamiltonian CNN"),
         "second_order": ("leapfrog (second-order hyperbolic PDE)", "Second-order CNN")}


def paper_widths(num_classes: int) -> tuple[int, int, int, int]:
    """Channels of the paper: CIFAR-10 ``[32, 64, 112, 112]``, CIFAR-100 ``[32, 64, 128, 256]``."""
    return (32, 64, 112, 112) if num_classes <= 10 else (32, 64, 128, 256)


class PDEBlock(nn.Module):
    """``nt`` steps of one scheme, one symmetric layer (two for Hamiltonian) per step."""

    def __init__(self, kind: str, channels: int, nt: int = 3, h: float = 1.0):
        super().__init__()
        self.kind, self.h = kind, h
        width, per_step = (channels // 2, 2) if kind == "hamiltonian" else (channels, 1)
        self.layers = nn.ModuleList(SymmetricLayer(width, norm="tv") for _ in range(per_step * nt))

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        h = self.h
        if self.kind == "parabolic":
            for layer in self.layers:
                y = y - h * layer(y)
        elif self.kind == "second_order":
            y_prev = y
            for layer in self.layers:
                y_prev, y = y, leapfrog_step(layer, y_prev, y, h)
        else:
            a, b = torch.chunk(y, 2, dim=1)
            for f1, f2 in zip(self.layers[0::2], self.layers[1::2]):
                a, b = verlet_step(f1, f2, a, b, h)
            y = torch.cat([a, b], dim=1)
        return y


class PDECNN(nn.Module):
    """Opening layer, three (PDE block, connector) units, linear classifier."""

    def __init__(self, kind: str, num_classes: int = 10, in_channels: int = 3, widths=None, nt: int = 3, h: float = 1.0):
        super().__init__()
        nf = tuple(widths) if widths else paper_widths(num_classes)
        self.opening = nn.Sequential(nn.Conv2d(in_channels, nf[0], 3, 1, 1, bias=False),
                                     nn.BatchNorm2d(nf[0]), nn.ReLU(inplace=True))
        units = []
        for k in range(len(nf) - 1):
            units += [PDEBlock(kind, nf[k], nt, h), nn.Conv2d(nf[k], nf[k + 1], 1, bias=False),
                      nn.BatchNorm2d(nf[k + 1]), nn.ReLU(inplace=True)]
            if k < len(nf) - 2:
                units.append(nn.AvgPool2d(2))
        self.units = nn.Sequential(*units)
        self.head = nn.Linear(nf[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.units(self.opening(x))
        return self.head(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def _register(kind: str) -> None:
    scheme, model = KINDS[kind]
    steps = 3 * 3 * (2 if kind == "hamiltonian" else 1)

    @register_model(f"{kind}_cnn", family="discrete", paper=RUTHOTTO20, scheme=scheme, evals_per_forward=steps,
                    reference=[{"table_id": "RUTHOTTO20_T1", "model": model,
                                "variant": "symmetric layer + TV normalization"}])
    def factory(num_classes: int = 10, in_channels: int = 3, widths=None, nt: int = 3, h: float = 1.0) -> nn.Module:
        return PDECNN(kind, num_classes, in_channels, widths, nt, h)

    factory.__doc__ = f"{model} of Ruthotto & Haber (widths by num_classes, see paper_widths)."


for _kind in KINDS:
    _register(_kind)
