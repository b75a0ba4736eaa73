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

Parameters (issue 27, point 1): ``revnet38`` 464,890, ``revnet110`` 1,729,194, ``revnet164``
1,748,778 on CIFAR-10, the counts of the network the authors' code builds from
``cifar_configs.py`` (renmengye/revnet-public@5486f61, ``resnet/models/revnet_model.py`` and
``resnet_model.py``: every unit, the first of a stage included, is a coupling on the channel
halves; the first unit of stage 1 drops only F's leading BN-ReLU), derived by hand in
``tests/test_faithful_revnet.py``.

MemCNN's ``memcnn.models.resnet`` (silvandeleemput/memcnn@439ac26, run with its
``config/experiments.json``) builds 573,994 / 1,854,890 / 1,983,786, the numbers of its README
table, because it makes the first unit of every stage that changes shape (stages 2 and 3; stage
1 too with bottlenecks, whose width grows 32 -> 128) an ordinary pre-activation residual block
over **all** channels (convs ``cin -> cout``, not halves ``cin/2 -> cout/2`` with a G branch) plus
a 1x1 conv + BN projection shortcut, and drops the leading BN-ReLU of both F and G in stage 1's
first unit. Its bottleneck also strides the 3x3 conv, not the first 1x1. Those networks are
registered as the named variants ``memcnn_revnet38/110/164`` (:class:`MemcnnRevNet`); MemCNN's
accuracy and activation-memory rows (``MEMCNN_REPRO``, variant ``memcnn PyTorch``) are their
reference, and the authors' own code run by MemCNN (variant ``revnet-public TensorFlow``) is the
reference of ``revnet38/110/164``.
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


def preact_convs(convs: list[tuple[int, int, int, int]], preact: bool) -> nn.Sequential:
    """``[BN-ReLU]-conv`` then ``BN-ReLU-conv`` per further ``(in, out, kernel, stride)``; bias-free convs."""
    layers: list[nn.Module] = []
    for j, (i, o, k, s) in enumerate(convs):
        if j or preact:
            layers += [nn.BatchNorm2d(i), nn.ReLU(inplace=j > 0)]
        layers.append(nn.Conv2d(i, o, k, s, k // 2, bias=False))
    return nn.Sequential(*layers)


def residual_fn(cin: int, cout: int, stride: int = 1, bottleneck: bool = False, preact: bool = True) -> nn.Sequential:
    """Pre-activation residual function on one half of the state (revnet-public: the first 1x1 strides)."""
    convs = [(cin, cout // 4, 1, stride), (cout // 4, cout // 4, 3, 1), (cout // 4, cout, 1, 1)] \
        if bottleneck else [(cin, cout, 3, stride), (cout, cout, 3, 1)]
    return preact_convs(convs, preact)


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
        reference=[{"table_id": "MEMCNN_REPRO", "model": "RevNet", "depth": str(depth),
                    "variant": "revnet-public TensorFlow"}],
    )
    def factory(num_classes: int = 10, in_channels: int = 3, invertible: bool = True) -> nn.Module:
        return RevNet(depth, num_classes, in_channels, invertible)

    factory.__doc__ = f"RevNet-{depth} ({'bottleneck' if bottleneck else 'basic'} units {list(units)})."


for _depth in CONFIGS:
    _register(_depth)


# ------------------------------------------------------------------ MemCNN's RevNets (named variant)

# depth: (blocks per stage, channels_per_layer [stem, planes of stages 1-3], bottleneck), from
# memcnn@439ac26 config/experiments.json (revnet38/110/164 on top of resnet32's stem and strides)
MEMCNN_CONFIGS = {
    38: ((3, 3, 3), (32, 32, 64, 112), False),
    110: ((9, 9, 9), (32, 32, 64, 128), False),
    164: ((9, 9, 9), (32, 32, 64, 128), True),
}
MEMCNN = "silvandeleemput/memcnn@439ac26 memcnn/models/resnet.py, memcnn/config/experiments.json"


def memcnn_branch(cin: int, planes: int, stride: int, bottleneck: bool, preact: bool) -> nn.Sequential:
    """MemCNN's ``BasicBlockSub``/``BottleneckSub``: [BN-ReLU]-conv, then (BN-ReLU-conv) x 1 or 2.

    Basic: 3x3 ``cin -> planes`` (strided), 3x3 ``planes -> planes``. Bottleneck: 1x1 ``cin ->
    planes``, 3x3 ``planes -> planes`` (strided), 1x1 ``planes -> 4 planes``.
    """
    convs = [(cin, planes, 1, 1), (planes, planes, 3, stride), (planes, 4 * planes, 1, 1)] if bottleneck \
        else [(cin, planes, 3, stride), (planes, planes, 3, 1)]
    return preact_convs(convs, preact)


class MemcnnBlock(nn.Module):
    """MemCNN's non-reversible first block of a stage that changes shape: a residual block over
    the whole state with a 1x1 conv + BN projection shortcut; autograd stores its activations."""

    def __init__(self, cin: int, planes: int, stride: int, bottleneck: bool, preact: bool):
        super().__init__()
        cout = planes * (4 if bottleneck else 1)
        self.sub = memcnn_branch(cin, planes, stride, bottleneck, preact)
        self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x1: torch.Tensor, x2: torch.Tensor):
        x = torch.cat([x1, x2], dim=1)
        return torch.chunk(self.sub(x) + self.shortcut(x), 2, dim=1)


class MemcnnRevNet(nn.Module):
    """The RevNet that MemCNN builds for its README table (named variant; see the module docstring).

    Stem conv-BN-ReLU; per stage a :class:`MemcnnBlock` where the shape changes, else a coupling,
    then couplings ``y1 = x1 + F(x2)``, ``y2 = x2 + G(y1)`` on the halves; final BN-ReLU, global
    pool, linear. Convs are initialised as MemCNN does (normal, std sqrt(2 / (k^2 out)), PyTorch's
    ``kaiming_normal_`` fan_out), the linear layer keeps PyTorch's default, BN PyTorch's eps 1e-5
    and momentum 0.1 (``batch_norm_fix: false`` in experiments.json).
    """

    forward = RevNet.forward

    def __init__(self, depth: int, num_classes: int = 10, in_channels: int = 3, invertible: bool = True):
        super().__init__()
        units, filters, bottleneck = MEMCNN_CONFIGS[depth]
        expansion = 4 if bottleneck else 1
        self.stem = nn.Sequential(nn.Conv2d(in_channels, filters[0], 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(filters[0]), nn.ReLU())
        self.stages = nn.ModuleList()
        cin = filters[0]
        for s, (n, planes) in enumerate(zip(units, filters[1:])):
            stride, cout, preact = (2 if s else 1), planes * expansion, s > 0  # noactivation in layer1
            start: list[nn.Module] = []
            shears = []
            if stride != 1 or cin != cout:
                start = [MemcnnBlock(cin, planes, stride, bottleneck, preact)]
            else:
                shears += revnet_unit(memcnn_branch(cin // 2, planes // 2, 1, bottleneck, preact),
                                      memcnn_branch(cin // 2, planes // 2, 1, bottleneck, preact))
            for _ in range(n - 1):
                shears += revnet_unit(memcnn_branch(cout // 2, planes // 2, 1, bottleneck, True),
                                      memcnn_branch(cout // 2, planes // 2, 1, bottleneck, True))
            self.stages.append(nn.ModuleList(start + [ReversibleSequence(shears, invertible)]))
            cin = cout
        self.final = nn.Sequential(nn.BatchNorm2d(cin), nn.ReLU())
        self.head = nn.Linear(cin, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")


def _register_memcnn(depth: int) -> None:
    units, _, bottleneck = MEMCNN_CONFIGS[depth]

    @register_model(
        f"memcnn_revnet{depth}", family="discrete", paper=GOMEZ17 + "; as built by MemCNN (" + MEMCNN + ")",
        scheme="reversible coupling (forward Euler split)",
        # a MemcnnBlock has one residual function, a coupling two
        evals_per_forward=2 * sum(units) - (3 if bottleneck else 2),
        reference=[{"table_id": "MEMCNN_REPRO", "model": "RevNet", "depth": str(depth), "variant": "memcnn PyTorch"}],
    )
    def factory(num_classes: int = 10, in_channels: int = 3, invertible: bool = True) -> nn.Module:
        return MemcnnRevNet(depth, num_classes, in_channels, invertible)

    factory.__doc__ = (f"RevNet-{depth} as MemCNN builds it ({'bottleneck' if bottleneck else 'basic'} blocks "
                       f"{list(units)}; non-reversible full-width first blocks with projection shortcuts).")


for _depth in MEMCNN_CONFIGS:
    _register_memcnn(_depth)
