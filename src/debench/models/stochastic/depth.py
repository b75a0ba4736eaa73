"""Random residual blocks on the CIFAR ResNet skeleton: stochastic depth, ShakeDrop, dropout.

Each of these makes a residual block ``x + f(x)`` random during training and replaces it by its
expectation at test time, so the trained net is a forward-Euler step whose step size is the
expected gate:

- **stochastic depth** (Huang, Sun, Liu, Sedra, Weinberger, ECCV 2016): the whole branch of
  block ``l`` is kept with probability ``p_l = 1 - l/L (1 - p_L)`` (linear decay from 1 to
  ``p_L``, ``p_L = 0.5`` in the paper), one coin per mini-batch, and a dropped branch is not
  computed at all (that is where the ~25% training speed-up comes from). At test time the branch
  is scaled by ``p_l``.
- **ShakeDrop** (Yamada, Iwamura, Akiba, Kise, IEEE Access 2019): the branch is multiplied by
  ``b + alpha - b alpha`` in the forward pass and its gradient by ``b + beta - b beta`` in the
  backward pass, ``b ~ Bernoulli(p_l)``, ``alpha ~ U[-1, 1]``, ``beta ~ U[0, 1]``, one draw per
  image; test time uses ``E[b + alpha - b alpha] = p_l``. ``p_l`` decays linearly to ``p_L``
  (0.5 in the paper). Model arg ``level``: ``image`` (default: ``b`` drawn per image) or ``batch``
  (one ``b`` per mini-batch, ``alpha`` and ``beta`` still per image), the reimplementation
  owruby/shake-drop_pytorch@4ef1884 ``models/shakedrop.py`` (whose README names the authors' Torch
  code github.com/imenurok/ShakeDrop; only that repository's README is stored, so which level the
  paper's tables used was not read from code).
- **dropout** inside the residual branch (conv-BN-ReLU-dropout-conv-BN, as in wide ResNets),
  the baseline regularizer these are compared with.
"""

from __future__ import annotations

import random
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from debench.models.discrete.resnet import BasicBranch, CifarResNet, ShortcutA
from debench.registry import register_model

HUANG16 = "Huang, Sun, Liu, Sedra, Weinberger. Deep Networks with Stochastic Depth. ECCV 2016"
YAMADA19 = "Yamada, Iwamura, Akiba, Kise. ShakeDrop Regularization for Deep Residual Learning. IEEE Access 2019"
SRIVASTAVA14 = "Srivastava et al. Dropout. JMLR 2014; in residual branches as in Zagoruyko & Komodakis, BMVC 2016"


def linear_survival(index: int, total: int, p_last: float) -> float:
    """Huang et al.'s linear decay rule ``p_l = 1 - l / L (1 - p_L)`` for block ``l = index + 1``.

    Args:
        index: zero-based block index (the stem is not a residual block).
        total: number of residual blocks ``L``.
        p_last: survival probability ``p_L`` of the last block.

    Returns:
        The survival probability of the block; ``p_last`` for the last block, close to 1 for the
        first.
    """
    if not 0.0 < p_last <= 1.0:
        raise ValueError(f"model arg 'p_last' must be in (0, 1], got {p_last}")
    return 1.0 - (index + 1) / total * (1.0 - p_last)


class StochasticDepthBlock(nn.Module):
    """``act(shortcut(x) + b f(x))`` with ``b ~ Bernoulli(p)`` per mini-batch; ``b -> p`` in eval.

    Args:
        branch: the residual function ``f``.
        shortcut: the identity path (option-A shortcut in the CIFAR ResNets).
        survival: keep probability ``p`` of the branch.
        activation: applied after the sum (ReLU in the ResNets; identity in tests that need the
            block to be linear so the training output is exact in expectation).
    """

    def __init__(self, branch: nn.Module, shortcut: nn.Module, survival: float,
                 activation: Callable[[torch.Tensor], torch.Tensor] = F.relu):
        super().__init__()
        self.branch, self.shortcut, self.survival, self.activation = branch, shortcut, survival, activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = self.shortcut(x)
        if self.training:
            # Python's RNG: one coin per mini-batch, no device round trip.
            if random.random() >= self.survival:
                return self.activation(skip)
            return self.activation(skip + self.branch(x))
        return self.activation(skip + self.survival * self.branch(x))

    def extra_repr(self) -> str:
        return f"survival={self.survival:.4f}"


SHAKEDROP_LEVELS = ("image", "batch")


class ShakeDropGate(torch.autograd.Function):
    """Multiply by ``b + alpha - b alpha`` forward and by ``b + beta - b beta`` backward."""

    @staticmethod
    def forward(ctx, h: torch.Tensor, survival: float, batch_level: bool = False) -> torch.Tensor:
        shape = (h.shape[0],) + (1,) * (h.dim() - 1)
        b_shape = (1,) * h.dim() if batch_level else shape  # one gate per mini-batch, or per image
        b = torch.bernoulli(torch.full(b_shape, survival, device=h.device, dtype=h.dtype)).expand(shape)
        alpha = torch.empty(shape, device=h.device, dtype=h.dtype).uniform_(-1.0, 1.0)
        ctx.save_for_backward(b)
        return h * (b + alpha - b * alpha)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (b,) = ctx.saved_tensors
        beta = torch.rand_like(b)
        return grad * (b + beta - b * beta), None, None


class ShakeDropBlock(nn.Module):
    """``relu(shortcut(x) + gate * f(x))`` with the ShakeDrop gate; ``gate -> p`` in eval."""

    def __init__(self, branch: nn.Module, shortcut: nn.Module, survival: float, level: str = "image"):
        super().__init__()
        if level not in SHAKEDROP_LEVELS:
            raise ValueError(f"model arg 'level' must be one of {SHAKEDROP_LEVELS}, got {level!r}")
        self.branch, self.shortcut, self.survival, self.level = branch, shortcut, survival, level

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.branch(x)
        h = ShakeDropGate.apply(h, self.survival, self.level == "batch") if self.training else self.survival * h
        return F.relu(self.shortcut(x) + h)

    def extra_repr(self) -> str:
        return f"survival={self.survival:.4f}"


class DropoutBranch(nn.Sequential):
    """conv-BN-ReLU-dropout-conv-BN: the residual function with dropout between its convs."""

    def __init__(self, in_planes: int, planes: int, stride: int, rate: float):
        super().__init__(
            nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False),
            nn.BatchNorm2d(planes),
            nn.ReLU(inplace=True),
            nn.Dropout(rate),
            nn.Conv2d(planes, planes, 3, 1, 1, bias=False),
            nn.BatchNorm2d(planes),
        )


class DropoutBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int, rate: float):
        super().__init__()
        self.branch = DropoutBranch(in_planes, planes, stride, rate)
        self.shortcut = ShortcutA(in_planes, planes, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.shortcut(x) + self.branch(x))


def stochastic_depth_resnet(depth: int, num_classes: int = 10, in_channels: int = 3,
                            p_last: float = 0.5) -> CifarResNet:
    """CIFAR ResNet-``depth`` whose blocks survive with linearly decaying probability."""

    def block(i, o, s, idx, total):
        return StochasticDepthBlock(BasicBranch(i, o, s), ShortcutA(i, o, s), linear_survival(idx, total, p_last))

    return CifarResNet(depth, num_classes, in_channels, block=block)


def shakedrop_resnet(depth: int, num_classes: int = 10, in_channels: int = 3,
                     p_last: float = 0.5, level: str = "image") -> CifarResNet:
    """CIFAR ResNet-``depth`` with ShakeDrop gates (linear decay of ``p_l`` to ``p_last``; ``level``:
    a Bernoulli gate per ``image`` or per ``batch``)."""

    def block(i, o, s, idx, total):
        return ShakeDropBlock(BasicBranch(i, o, s), ShortcutA(i, o, s), linear_survival(idx, total, p_last), level)

    return CifarResNet(depth, num_classes, in_channels, block=block)


def dropout_resnet(depth: int, num_classes: int = 10, in_channels: int = 3, drop_rate: float = 0.3) -> CifarResNet:
    """CIFAR ResNet-``depth`` with dropout of rate ``drop_rate`` inside every residual branch."""
    if not 0.0 <= drop_rate < 1.0:
        raise ValueError(f"model arg 'drop_rate' must be in [0, 1), got {drop_rate}")
    return CifarResNet(depth, num_classes, in_channels,
                       block=lambda i, o, s, idx, total: DropoutBlock(i, o, s, drop_rate))


# ---------------------------------------------------------------- registry entries

def _register(depth: int) -> None:
    n = 3 * ((depth - 2) // 6)
    sd_ref = {
        110: [{"table_id": "HUANG16_T1", "model": "ResNet with stochastic depth", "depth": "110"},
              {"table_id": "HUANG16_REPO", "model": "ResNet + stochastic depth", "depth": "110"}],
        1202: [{"table_id": "HUANG16_TXT", "model": "ResNet with stochastic depth", "depth": "1202",
                "variant": "linear decay p_L=0.5"}],
    }.get(depth, [])

    @register_model(f"stochastic_depth_resnet{depth}", family="stochastic", paper=HUANG16,
                    scheme="forward Euler with Bernoulli step sizes (expectation at test time)",
                    evals_per_forward=n, reference=sd_ref, p_last=0.5)
    def sd(num_classes: int = 10, in_channels: int = 3, p_last: float = 0.5) -> nn.Module:
        return stochastic_depth_resnet(depth, num_classes, in_channels, p_last)

    sd.__doc__ = f"ResNet-{depth} with stochastic depth (linear decay to p_last)."


for _d in (20, 56, 110, 1202):
    _register(_d)


@register_model("shakedrop_resnet110", family="stochastic", paper=YAMADA19,
                scheme="forward Euler with random step sizes (ShakeDrop gate)", evals_per_forward=54,
                reference=[], p_last=0.5, level="image")
def shakedrop_resnet110(num_classes: int = 10, in_channels: int = 3, p_last: float = 0.5,
                        level: str = "image") -> nn.Module:
    """ResNet-110 with ShakeDrop (the paper's own tables use PyramidNet; no row in the reference CSV)."""
    return shakedrop_resnet(110, num_classes, in_channels, p_last, level)


@register_model("dropout_resnet110", family="stochastic", paper=SRIVASTAVA14,
                scheme="forward Euler with a dropout-perturbed residual function", evals_per_forward=54,
                reference=[], drop_rate=0.3)
def dropout_resnet110(num_classes: int = 10, in_channels: int = 3, drop_rate: float = 0.3) -> nn.Module:
    """ResNet-110 with dropout between the two convolutions of every residual branch."""
    return dropout_resnet(110, num_classes, in_channels, drop_rate)
