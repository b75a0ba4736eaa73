"""LM-ResNet (Lu, Zhong, Li, Dong, ICML 2018): a residual block is a linear two-step method.

``u_{n+1} = (1 - k_n) u_n + k_n u_{n-1} + f(u_n)`` with one learnable scalar ``k_n`` per block,
initialized uniformly in [-0.1, 0] (the official MResNet.py stores ``k'_n = 1 - k_n`` in
[1.0, 1.1]). The network is the CIFAR ResNet of :mod:`resnet` (same stem, residual function,
option-A shortcuts, ReLU after the update) with the two-step update in place of forward Euler:

- the first block has no ``u_{-1}`` and takes a forward-Euler step (no ``k``), so the model
  has ``3n - 1`` scalars more than ``resnet{6n+2}``;
- at a stage transition both ``u_n`` and ``u_{n-1}`` go through the parameter-free option-A
  shortcut (the official code uses a BN-ReLU-1x1-conv projection for ``u_n`` and no LM term in
  that block; see docs/models/discrete.md).

This is a deliberate variant of the authors' network, documented in docs/models/discrete.md
("Deliberate difference, named here"): the official ``MResNet`` is pre-activation, has no BN
in its stem and gates the LM term with a ``pretrain`` flag whose schedule was not found.

``mresnet20/32/44/56/110`` (issue 27) rebuild the authors' ``MResNet`` (2prime/LM-ResNet@ff49654,
``MResNet.py``; :class:`AuthorsLMResNet`): 3x3 stem conv without BN or ReLU, pre-activation
blocks with no ReLU after the update, BN-ReLU-1x1-conv projections at the two stage transitions
(a plain residual step there), a final BN-ReLU, and ``u_{n+1} = f(u_n) + k u_n + (1 - k) u_{n-1}``
with ``k`` in U[1.0, 1.1] for the other blocks. Model arg ``lm`` (True) is the negation of the
authors' ``pretrain`` flag; their ``cifar10_training.ipynb`` builds ``MResNet20()`` with
``pretrain=True`` and never calls ``change_state()``, so the notebook trains with the LM term off;
when to switch it on is not in the repository. Parameters (10 classes) 272,384 for ``mresnet20``:
the authors' 273,475 less what their module allocates but never uses (the stem BN, 32; the
bottleneck-only ``downsample1``, 1,056; the ``k`` of the first and the two transition blocks, 3).

``lm_resnet56_sd``/``lm_resnet110_sd`` add stochastic depth: block ``i`` of ``L`` is dropped in
training with probability ``0.5 * i / (L - 1)`` and its ``f`` scaled by ``1 / (1 - p)`` when kept.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from debench.models.discrete.resnet import BasicBranch, CifarResNet, ShortcutA
from debench.models.discrete.schemes import lm_step
from debench.registry import register_model

LU18 = "Lu, Zhong, Li, Dong. Beyond Finite Layer Neural Networks: Bridging Deep Architectures and Numerical Differential Equations. ICML 2018"


class LMBlock(nn.Module):
    """``u_{n+1} = relu(lm_step(f, S u_n, S u_{n-1}, k_n))`` with ``S`` the option-A shortcut."""

    def __init__(self, in_planes: int, planes: int, stride: int, first: bool, death_rate: float = 0.0):
        super().__init__()
        self.branch = BasicBranch(in_planes, planes, stride)
        self.shortcut = ShortcutA(in_planes, planes, stride)
        self.k = None if first else nn.Parameter(torch.empty(1).uniform_(-0.1, 0.0))
        self.death_rate = death_rate

    def residual(self, u: torch.Tensor) -> torch.Tensor:
        if not self.training or not self.death_rate:
            return self.branch(u)
        if torch.rand(()) < self.death_rate:
            return u.new_zeros(())
        return self.branch(u) / (1 - self.death_rate)

    def forward(self, u: torch.Tensor, u_prev: torch.Tensor | None):
        su = self.shortcut(u)
        fu = self.residual(u)
        if self.k is None or u_prev is None:
            out = su + fu
        else:
            out = lm_step(lambda _: fu, su, self.shortcut(u_prev), self.k)
        return F.relu(out), su


class LMResNet(CifarResNet):
    """CIFAR ResNet whose blocks are :class:`LMBlock`; ``death_rate`` > 0 adds stochastic depth."""

    def __init__(self, depth: int, num_classes: int = 10, in_channels: int = 3, death_rate: float = 0.0):
        def block(i, o, s, idx, total):
            return LMBlock(i, o, s, first=idx == 0, death_rate=death_rate * idx / max(total - 1, 1))

        super().__init__(depth, num_classes, in_channels, block=block)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u, u_prev = self.stem(x), None
        for blk in self.blocks:
            u, u_prev = blk(u, u_prev)
        return self.head(torch.flatten(F.adaptive_avg_pool2d(u, 1), 1))


def _register(depth: int, sd: bool) -> None:
    n = 3 * ((depth - 2) // 6)
    name = f"lm_resnet{depth}" + ("_sd" if sd else "")
    # the survey's relative claim: LM-ResNet against the ResNet of the same depth (with stochastic
    # depth: against the stochastic-depth ResNet), the report's difference with its CI
    meta = dict(family="stochastic", scheme="stochastic linear multistep (2-step)",
                baseline=f"stochastic_depth_resnet{depth}") if sd else \
        dict(family="discrete", scheme="linear multistep (2-step)", baseline=f"resnet{depth}")

    @register_model(name, paper=LU18, evals_per_forward=n, **meta)
    def factory(num_classes: int = 10, in_channels: int = 3) -> nn.Module:
        return LMResNet(depth, num_classes, in_channels, death_rate=0.5 if sd else 0.0)

    factory.__doc__ = f"LM-ResNet-{depth}{' with stochastic depth (p_L = 0.5)' if sd else ''}."


for _depth in (20, 32, 44, 56, 110):
    _register(_depth, sd=False)


# ------------------------------------------------------------------ the authors' MResNet (issue 27)

class PreActBranch(nn.Sequential):
    """BN-ReLU-conv3x3(stride)-BN-ReLU-conv3x3, convs without bias (the authors' ``BasicBlock``)."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__(nn.BatchNorm2d(cin), nn.ReLU(), nn.Conv2d(cin, cout, 3, stride, 1, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(), nn.Conv2d(cout, cout, 3, 1, 1, bias=False))


class AuthorsLMResNet(nn.Module):
    """The authors' ``MResNet`` with basic blocks (see the module docstring).

    Args:
        depth: 6n + 2.
        num_classes, in_channels: head and stem sizes.
        lm: apply the LM term (the authors' ``pretrain=False``); False is their plain
            pre-activation ResNet (``pretrain=True``).
    """

    def __init__(self, depth: int, num_classes: int = 10, in_channels: int = 3, lm: bool = True):
        super().__init__()
        n = (depth - 2) // 6
        self.lm = bool(lm)
        self.stem = nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False)
        self.blocks, self.projections, ks = nn.ModuleList(), nn.ModuleDict(), []
        cin = 16
        for s, planes in enumerate((16, 32, 64)):
            for j in range(n):
                stride = 2 if s and j == 0 else 1
                self.blocks.append(PreActBranch(cin, planes, stride))
                if cin != planes:  # the authors' downsample21 / downsample31
                    self.projections[str(len(self.blocks) - 1)] = nn.Sequential(
                        nn.BatchNorm2d(cin), nn.ReLU(), nn.Conv2d(cin, planes, 1, stride, bias=False))
                cin = planes
        self.lm_blocks = [i for i in range(1, len(self.blocks)) if str(i) not in self.projections]
        self.ks = nn.ParameterList(nn.Parameter(torch.empty(1).uniform_(1.0, 1.1)) for _ in self.lm_blocks)
        self.final = nn.Sequential(nn.BatchNorm2d(64), nn.ReLU())
        self.head = nn.Linear(64, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):  # the authors' normal(0, sqrt(2 / (k^2 out)))
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = self.stem(x)
        u, u_prev = self.blocks[0](u) + u, u
        k_of = dict(zip(self.lm_blocks, self.ks))
        for i in range(1, len(self.blocks)):
            f = self.blocks[i](u)
            if str(i) in self.projections:
                residual = self.projections[str(i)](u)
                u, u_prev = f + residual, residual
            elif self.lm:
                k = k_of[i]
                u, u_prev = f + k * u + (1 - k) * u_prev, u
            else:
                u, u_prev = f + u, u
        u = self.final(u)
        return self.head(torch.flatten(F.adaptive_avg_pool2d(u, 1), 1))


def _register_authors(depth: int) -> None:
    @register_model(f"mresnet{depth}", family="discrete", paper=LU18 + "; the authors' MResNet (2prime/LM-ResNet)",
                    scheme="linear multistep (2-step)", evals_per_forward=3 * ((depth - 2) // 6),
                    baseline=f"resnet{depth}", lm=True)
    def factory(num_classes: int = 10, in_channels: int = 3, lm: bool = True) -> nn.Module:
        return AuthorsLMResNet(depth, num_classes, in_channels, lm)

    factory.__doc__ = f"The authors' MResNet-{depth} (pre-activation LM-ResNet; lm=False: their pretrain mode)."


for _depth in (20, 32, 44, 56, 110):
    _register_authors(_depth)
for _depth in (56, 110):
    _register(_depth, sd=True)
