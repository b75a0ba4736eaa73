"""ODE-Net, RK-Net and their ResNet baseline (Chen, Rubanova, Bettencourt, Duvenaud, NeurIPS 2018).

MNIST (Sec. 7.1, Table 1): the input is downsampled twice by convolutions (stride 2), then
either six residual blocks (``resnet6_mnist``, 0.60M parameters), or one ODE block whose
vector field is a single such block with the time concatenated to both convolution inputs
(``odenet_mnist`` with an adaptive solver and the adjoint, 0.22M; ``rknet_mnist`` with the same
f, back-propagating through a fixed-step Runge-Kutta integrator). Group normalization
throughout, a linear head after global average pooling.

CIFAR (``odenet_cifar``, ours): the same vector field in each of three stages of a CIFAR ResNet,
the stages joined by residual stride-2 downsampling blocks, so the family sits in the same table
as the discrete models.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from debench.models.continuous.blocks import ContinuousModel, ConvODEFunc, ODEBlock, group_norm, split_options
from debench.registry import register_model

CHEN18 = "Chen, Rubanova, Bettencourt, Duvenaud. Neural Ordinary Differential Equations. NeurIPS 2018"


def mnist_stem(in_channels: int, width: int = 64) -> nn.Sequential:
    """Chen et al.'s downsampling: conv3x3 (no padding), then two 4x4 stride-2 convs (28 -> 6)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, width, 3, 1), group_norm(width), nn.ReLU(inplace=True),
        nn.Conv2d(width, width, 4, 2, 1), group_norm(width), nn.ReLU(inplace=True),
        nn.Conv2d(width, width, 4, 2, 1),
    )


def head(width: int, num_classes: int) -> nn.Sequential:
    return nn.Sequential(group_norm(width), nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(width, num_classes))


class PreActBlock(nn.Module):
    """Pre-activation residual block: x + conv(relu(gn(conv(relu(gn(x)))))), optional stride 2."""

    def __init__(self, dim_in: int, dim_out: int, stride: int = 1):
        super().__init__()
        self.norm1, self.conv1 = group_norm(dim_in), nn.Conv2d(dim_in, dim_out, 3, stride, 1, bias=False)
        self.norm2, self.conv2 = group_norm(dim_out), nn.Conv2d(dim_out, dim_out, 3, 1, 1, bias=False)
        self.shortcut = None if stride == 1 and dim_in == dim_out else nn.Conv2d(dim_in, dim_out, 1, stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.norm1(x))
        short = x if self.shortcut is None else self.shortcut(out)
        out = self.conv2(torch.relu(self.norm2(self.conv1(out))))
        return out + short


class ODENet(ContinuousModel):
    """Stem, ODE blocks (one per stage, joined by ``transitions``), head."""

    def __init__(self, stem: nn.Module, blocks: list[nn.Module], transitions: list[nn.Module], head_: nn.Module):
        super().__init__()
        self.stem, self.head = stem, head_
        self.blocks, self.transitions = nn.ModuleList(blocks), nn.ModuleList(transitions)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for i, block in enumerate(self.blocks):
            if i:
                x = self.transitions[i - 1](x)
            x = block(x)
        return self.head(x)


def _mnist_odenet(num_classes: int, in_channels: int, options: dict) -> ODENet:
    config, reg = split_options(options)
    width = 64
    return ODENet(mnist_stem(in_channels, width), [ODEBlock(ConvODEFunc(width), config, **reg)], [],
                  head(width, num_classes))


@register_model("odenet_mnist", family="continuous", paper=CHEN18, scheme="adaptive dopri5 + adjoint",
                reference=[{"table_id": "CHEN18_T1", "model": "ODE-Net"}],
                method="dopri5", rtol=1e-3, atol=1e-3, adjoint=True)
def odenet_mnist(num_classes: int = 10, in_channels: int = 1, image_size: int = 28, **options) -> nn.Module:
    """ODE-Net of Chen et al. Table 1 (0.22M parameters); ``options``: solver and RNODE keys."""
    return _mnist_odenet(num_classes, in_channels, options)


@register_model("rknet_mnist", family="continuous", paper=CHEN18, scheme="fixed-step rk4, backprop through solver",
                reference=[{"table_id": "CHEN18_T1", "model": "RK-Net"}],
                method="rk4", step_size=0.25, adjoint=False)
def rknet_mnist(num_classes: int = 10, in_channels: int = 1, image_size: int = 28, **options) -> nn.Module:
    """RK-Net of Chen et al. Table 1: ODE-Net's f, gradients by autograd through a fixed RK grid."""
    return _mnist_odenet(num_classes, in_channels, options)


class ResNet6(nn.Module):
    """Chen et al.'s baseline: the same stem and head around six residual blocks (0.60M)."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1, width: int = 64, depth: int = 6):
        super().__init__()
        self.stem = mnist_stem(in_channels, width)
        self.blocks = nn.Sequential(*[PreActBlock(width, width) for _ in range(depth)])
        self.head = head(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)))


@register_model("resnet6_mnist", family="continuous", paper=CHEN18, scheme="forward Euler (6 residual blocks)",
                evals_per_forward=6, reference=[{"table_id": "CHEN18_T1", "model": "ResNet"}])
def resnet6_mnist(num_classes: int = 10, in_channels: int = 1, image_size: int = 28) -> nn.Module:
    """The ResNet row of Chen et al. Table 1: six residual blocks after the downsampling stem."""
    return ResNet6(num_classes, in_channels)


@register_model("odenet_cifar", family="continuous", paper=CHEN18, scheme="adaptive dopri5 + adjoint, 3 stages",
                method="dopri5", rtol=1e-3, atol=1e-3, adjoint=True, widths=(32, 64, 128))
def odenet_cifar(num_classes: int = 10, in_channels: int = 3, image_size: int = 32,
                 widths: tuple[int, ...] = (32, 64, 128), **options) -> nn.Module:
    """ODE-Net for CIFAR: conv stem, one ODE block per stage, residual stride-2 transitions.

    Args:
        widths: channels of the stages (fewer entries, fewer stages); ``(8, 16)`` for smoke runs.
        **options: solver options and RNODE weights (see :mod:`debench.models.continuous.blocks`).
    """
    config, reg = split_options(options)
    widths = tuple(int(w) for w in widths)
    stem = nn.Sequential(nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False))
    blocks = [ODEBlock(ConvODEFunc(w), config, **reg) for w in widths]
    transitions = [PreActBlock(a, b, stride=2) for a, b in zip(widths, widths[1:])]
    return ODENet(stem, blocks, transitions, head(widths[-1], num_classes))
