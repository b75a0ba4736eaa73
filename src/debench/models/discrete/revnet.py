"""RevNet (Gomez, Ren, Urtasun, Grosse, NeurIPS 2017): reversible residual network.

The state is split into channel halves ``(x1, x2)``; a unit is ``y1 = x1 + F(x2)``,
``y2 = x2 + G(y1)`` with pre-activation residual functions (BN-ReLU-conv, twice for basic units,
thrice with a 4x bottleneck). Configurations follow the official revnet-public
``cifar_configs.py``: RevNet-38 units [3, 3, 3], filters [32, 32, 64, 112]; RevNet-110 units
[9, 9, 9], filters [32, 32, 64, 128]; RevNet-164 bottleneck units [9, 9, 9], filters
[32, 32, 64, 128] x 4 = [32, 128, 256, 512] after the stem. Depth = 2 + (2 or 3 convs) x 2 x units.

A unit that changes resolution or width cannot be inverted; as in the paper it is an ordinary
module whose activations autograd stores (downsampling by average pooling and zero padding for
basic units, a 1x1 projection for bottleneck units). All other units of a stage form one
:class:`ReversibleSequence`, which stores only its output pair.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from debench.models.discrete.layers import pool_pad
from debench.models.discrete.resnet import CifarResNet
from debench.models.discrete.reversible import ReversibleSequence
from debench.models.discrete.units import revnet_unit
from debench.registry import register_model

GOMEZ17 = "Gomez, Ren, Urtasun, Grosse. The Reversible Residual Network: Backpropagation Without Storing Activations. NeurIPS 2017"

CONFIGS = {  # depth: (units per stage, filters [stem, stage1, stage2, stage3], bottleneck)
    38: ((3, 3, 3), (32, 32, 64, 112), False),
    110: ((9, 9, 9), (32, 32, 64, 128), False),
    164: ((9, 9, 9), (32, 128, 256, 512), True),
}


def residual_fn(cin: int, cout: int, stride: int = 1, bottleneck: bool = False, preact: bool = True) -> nn.Sequential:
    """Pre-activation residual function on one half of the state."""
    convs = [(cin, cout // 4, 1, stride), (cout // 4, cout // 4, 3, 1), (cout // 4, cout, 1, 1)] \
        if bottleneck else [(cin, cout, 3, stride), (cout, cout, 3, 1)]
    layers: list[nn.Module] = []
    for j, (i, o, k, s) in enumerate(convs):
        if j or preact:
            layers += [nn.BatchNorm2d(i), nn.ReLU(inplace=j > 0)]
        layers.append(nn.Conv2d(i, o, k, s, k // 2, bias=False))
    return nn.Sequential(*layers)


class DownsampleUnit(nn.Module):
    """Non-invertible coupling unit that changes resolution/width; autograd stores its activations."""

    def __init__(self, cin: int, cout: int, stride: int, bottleneck: bool, preact: bool):
        super().__init__()
        hi, ho = cin // 2, cout // 2
        self.f = residual_fn(hi, ho, stride, bottleneck, preact)
        self.g = residual_fn(ho, ho, 1, bottleneck)
        self.stride, self.ho = stride, ho
        proj = bottleneck and (stride > 1 or cin != cout)
        self.p1 = nn.Conv2d(hi, ho, 1, stride, bias=False) if proj else None
        self.p2 = nn.Conv2d(hi, ho, 1, stride, bias=False) if proj else None

    def _down(self, x: torch.Tensor, proj: nn.Module | None) -> torch.Tensor:
        return proj(x) if proj is not None else pool_pad(x, self.ho, self.stride)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor):
        y1 = self._down(x1, self.p1) + self.f(x2)
        return y1, self._down(x2, self.p2) + self.g(y1)


class RevNet(nn.Module):
    """Stem conv-BN-ReLU, three stages of coupling units, final BN-ReLU, global pool, linear."""

    def __init__(self, depth: int, num_classes: int = 10, in_channels: int = 3, invertible: bool = True):
        super().__init__()
        units, filters, bottleneck = CONFIGS[depth]
        self.stem = nn.Sequential(nn.Conv2d(in_channels, filters[0], 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(filters[0]), nn.ReLU(inplace=True))
        self.stages = nn.ModuleList()
        cin = filters[0]
        for s, (n, cout) in enumerate(zip(units, filters[1:])):
            stride, start = (2 if s else 1), []
            if stride > 1 or cin != cout or bottleneck:
                start = [DownsampleUnit(cin, cout, stride, bottleneck, preact=s > 0)]
            h = cout // 2
            shears = [sh for j in range(n - len(start)) for sh in revnet_unit(
                residual_fn(h, h, 1, bottleneck, preact=s > 0 or j > 0 or bool(start)),
                residual_fn(h, h, 1, bottleneck))]
            self.stages.append(nn.ModuleList(start + [ReversibleSequence(shears, invertible)]))
            cin = cout
        self.final = nn.Sequential(nn.BatchNorm2d(cin), nn.ReLU(inplace=True))
        self.head = nn.Linear(cin, num_classes)
        CifarResNet.reset_parameters(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = torch.chunk(self.stem(x), 2, dim=1)
        for stage in self.stages:
            for unit in stage:
                x1, x2 = unit(x1, x2)
        x = self.final(torch.cat([x1, x2], dim=1))
        return self.head(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def _register(depth: int) -> None:
    units, _, bottleneck = CONFIGS[depth]

    @register_model(
        f"revnet{depth}", family="discrete", paper=GOMEZ17, scheme="reversible coupling (forward Euler split)",
        evals_per_forward=2 * sum(units),
        reference=[{"table_id": "MEMCNN_REPRO", "model": "RevNet", "depth": str(depth), "variant": "memcnn PyTorch"}],
    )
    def factory(num_classes: int = 10, in_channels: int = 3, invertible: bool = True) -> nn.Module:
        return RevNet(depth, num_classes, in_channels, invertible)

    factory.__doc__ = f"RevNet-{depth} ({'bottleneck' if bottleneck else 'basic'} units {list(units)})."


for _depth in CONFIGS:
    _register(_depth)
