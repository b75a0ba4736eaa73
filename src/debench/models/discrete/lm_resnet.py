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
    meta = dict(family="stochastic", scheme="stochastic linear multistep (2-step)") if sd else \
        dict(family="discrete", scheme="linear multistep (2-step)")

    @register_model(name, paper=LU18, evals_per_forward=n, **meta)
    def factory(num_classes: int = 10, in_channels: int = 3) -> nn.Module:
        return LMResNet(depth, num_classes, in_channels, death_rate=0.5 if sd else 0.0)

    factory.__doc__ = f"LM-ResNet-{depth}{' with stochastic depth (p_L = 0.5)' if sd else ''}."


for _depth in (20, 32, 44, 56, 110):
    _register(_depth, sd=False)
for _depth in (56, 110):
    _register(_depth, sd=True)
