"""Reversible networks of Chang, Meng, Haber, Ruthotto, Begert, Holtham (AAAI 2018).

Three discretizations of second-order/Hamiltonian dynamics, each exactly invertible, laid out as
the authors' code (LiliMeng/hamiltonian-revnet at fc7481c: ``resnet/models/hamiltonian_model.py``
on the revnet-public skeleton ``resnet_model.py``, configs ``resnet/configs/cifar_configs.py``):

- ``hamiltonian``: channel halves ``(Y, Z)``; a unit is one Verlet step ``Y += h F1(Z)``,
  ``Z -= h F2(Y)`` with the authors' force ``F(x) = K^T relu(K (x + b1) + b2)`` (learned biases,
  no BatchNorm: ``use_bn = False``; the very first force of the network has no ``b1``, the
  revnet-public ``no_activation`` unit) and ``h = 0.1`` (``return x*0.1``);
- ``midpoint``: window ``(Y_{j-1}, Y_j)``, ``Y_{j+1} = Y_{j-1} + 2h relu(K Y_j + b)``;
- ``leapfrog``: window ``(Y_{j-1}, Y_j)``, ``Y_{j+1} = 2Y_j - Y_{j-1} - h^2 K^T relu(K Y_j + b)``.

The authors published code for the Hamiltonian network only; the midpoint and leapfrog forces
are the paper's formulas, and their skeleton, step and widths are those of the Hamiltonian code.

Skeleton (revnet-public ``ResNetModel._build_inference``): 3x3 conv to 32 channels + BN + ReLU;
three stages of ``n`` units, ``filters = [32, 32, 64, 112]`` for depth 38 and ``[32, 32, 64, 128]``
above (``hamiltonian-50/110/164`` configs); the first unit of a stage still runs at the previous
stage's width and resolution and is followed by the transition (``_possible_downsample``:
2x2 average pooling, zero channels padded on both sides; the two-step schemes restart with
``Y_{-1} = Y_0``); final BN-ReLU, global average pooling, linear. A unit holds 4 conv
applications (Hamiltonian: K1, K1^T, K2, K2^T; midpoint/leapfrog: two steps), so depth =
4 x units + 2: 38 -> 3-3-3 units, 74 -> 6-6-6, 110 -> 9-9-9. Between transitions the units form
one :class:`ReversibleSequence` (only its output is stored).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from debench.models.discrete.layers import pool_pad
from debench.models.discrete.resnet import CifarResNet
from debench.models.discrete.reversible import ReversibleSequence
from debench.models.discrete.units import leapfrog_unit, midpoint_unit, verlet_unit
from debench.registry import register_model

CHANG18 = "Chang, Meng, Haber, Ruthotto, Begert, Holtham. Reversible Architectures for Arbitrarily Deep Residual Neural Networks. AAAI 2018"
SCHEMES = {"hamiltonian": "Verlet (symplectic, Hamiltonian)", "midpoint": "explicit midpoint (two-step)",
           "leapfrog": "leapfrog (second-order)"}
STEP = 0.1  # hamiltonian_model.py: the force is returned as x*0.1


def authors_filters(depth: int) -> tuple[int, int, int, int]:
    """``cifar_configs.py``: ``[32, 32, 64, 112]`` for depth 38, ``[32, 32, 64, 128]`` for deeper nets."""
    return (32, 32, 64, 112) if depth <= 38 else (32, 32, 64, 128)


class Force(nn.Module):
    """``K^T relu(K (x + b1) + b2)`` (``symmetric``) or ``relu(K x + b2)``; ``b1`` only if ``pre_bias``.

    Args:
        channels: input = output channels.
        symmetric: apply ``K^T`` after the activation (Hamiltonian, leapfrog).
        pre_bias: learn a bias added before ``K`` (the authors' Hamiltonian ``bias1``).
    """

    def __init__(self, channels: int, symmetric: bool = True, pre_bias: bool = False):
        super().__init__()
        self.symmetric = symmetric
        self.weight = nn.Parameter(torch.empty(channels, channels, 3, 3))
        nn.init.kaiming_normal_(self.weight, mode="fan_out", nonlinearity="relu")  # authors' sqrt(2 / (9 c_out))
        self.pre_bias = nn.Parameter(torch.zeros(channels)) if pre_bias else None
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pre_bias is not None:
            x = x + self.pre_bias.view(1, -1, 1, 1)
        z = F.relu(F.conv2d(x, self.weight, self.bias, padding=1))
        return F.conv_transpose2d(z, self.weight, padding=1) if self.symmetric else z


def _unit(kind: str, width: int, h: float, first: bool) -> list:
    if kind == "hamiltonian":
        return verlet_unit(Force(width // 2, pre_bias=not first), Force(width // 2, pre_bias=True), h)
    if kind == "midpoint":
        return midpoint_unit(Force(width, symmetric=False), h) + midpoint_unit(Force(width, symmetric=False), h)
    return leapfrog_unit(Force(width), h) + leapfrog_unit(Force(width), h)


class ChangNet(nn.Module):
    """Reversible Hamiltonian / midpoint / leapfrog CNN in the authors' layout.

    Args:
        kind: ``hamiltonian``, ``midpoint`` or ``leapfrog``.
        depth: 4 x units + 2, units split evenly over three stages.
        widths: ``filters`` (stem and stage channels); default :func:`authors_filters`.
        h: step size (the authors' 0.1).
        invertible: memory-saving backward (True) or plain autograd (False).

    Raises:
        ValueError: if ``depth`` is not 12 n + 2.
    """

    def __init__(self, kind: str, depth: int, num_classes: int = 10, in_channels: int = 3,
                 widths: tuple[int, ...] | None = None, h: float = STEP, invertible: bool = True):
        super().__init__()
        if (depth - 2) % 12:
            raise ValueError(f"depth must be 12n+2, got {depth}")
        n = (depth - 2) // 12
        widths = tuple(widths or authors_filters(depth))
        self.kind = kind
        self.stem = nn.Sequential(nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True))
        # Segments of units at one width, each followed by a transition (target width, stride).
        segments, shears, width = [], [], widths[0]
        for s in range(3):
            for j in range(n):
                width = widths[s] if j == 0 else widths[s + 1]
                shears += _unit(kind, width, h, first=(s == 0 and j == 0))
                if j == 0 and (widths[s + 1] != widths[s] or s > 0):
                    segments.append((ReversibleSequence(shears, invertible), widths[s + 1], 2 if s else 1))
                    shears = []
        segments.append((ReversibleSequence(shears, invertible), None, 1))
        self.stages = nn.ModuleList(seq for seq, _, _ in segments)
        self.transitions = [(w, stride) for _, w, stride in segments]
        self.final = nn.Sequential(nn.BatchNorm2d(widths[-1]), nn.ReLU(inplace=True))
        self.head = nn.Linear(widths[-1], num_classes)
        CifarResNet.reset_parameters(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.stem(x)
        if self.kind == "hamiltonian":
            a, b = torch.chunk(y, 2, dim=1)
        else:
            a, b = y, y
        for stage, (width, stride) in zip(self.stages, self.transitions):
            a, b = stage(a, b)
            if width is None:
                continue
            if self.kind == "hamiltonian":
                a, b = pool_pad(a, width // 2, stride), pool_pad(b, width // 2, stride)
            else:
                b = pool_pad(b, width, stride)
                a = b
        y = torch.cat([a, b], dim=1) if self.kind == "hamiltonian" else b
        y = self.final(y)
        return self.head(torch.flatten(F.adaptive_avg_pool2d(y, 1), 1))


def _register(kind: str, depth: int) -> None:
    @register_model(f"{kind}{depth}", family="discrete", paper=CHANG18, scheme=SCHEMES[kind],
                    evals_per_forward=2 * 3 * ((depth - 2) // 12), h=STEP)
    def factory(num_classes: int = 10, in_channels: int = 3, h: float = STEP, invertible: bool = True) -> nn.Module:
        return ChangNet(kind, depth, num_classes, in_channels, h=h, invertible=invertible)

    factory.__doc__ = f"Reversible {kind} network of depth {depth} (Chang et al. 2018), the authors' layout."


for _kind in SCHEMES:
    for _depth in (38, 74, 110):
        _register(_kind, _depth)
