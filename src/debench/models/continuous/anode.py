"""Augmented Neural ODEs (Dupont, Doucet, Teh, NeurIPS 2019) and second-order Neural ODEs
(Norcliffe, Bodnar, Day, Simidjievski, Lio, NeurIPS 2020 workshop / arXiv 2006.07220).

No feature extractor, as in Dupont et al.'s image experiments: the ODE acts on the image itself
(plus ``augment_dim`` zero channels for ANODE), its vector field is conv1x1-ReLU-conv3x3-ReLU-
conv1x1, and a linear layer reads the flattened final state. NODE's width is chosen so that its
parameter count matches ANODE's: 92 filters vs 64 + 5 augmented channels on MNIST (84,395 vs
84,816 parameters), 125 filters vs 64 + 10 on CIFAR (172,358 vs 171,799).

SONODE integrates the position-velocity state (x, v) with dx/dt = v, dv/dt = f(t, x, v); the
initial velocity is a learned 3x3 convolution of the input, v(0) = g(x(0)).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from debench.models.continuous.blocks import ContinuousModel, ODEBlock, split_options
from debench.registry import register_model

DUPONT19 = "Dupont, Doucet, Teh. Augmented Neural ODEs. NeurIPS 2019"
NORCLIFFE20 = "Norcliffe, Bodnar, Day, Simidjievski, Lio. On Second Order Behaviour in Augmented Neural ODEs. NeurIPS 2020"


class DupontConvField(nn.Module):
    """conv1x1 -> ReLU -> conv3x3 -> ReLU -> conv1x1, optionally with time as an extra channel."""

    def __init__(self, channels: int, filters: int, out_channels: int | None = None, time_dependent: bool = False):
        super().__init__()
        self.time_dependent = time_dependent
        extra = 1 if time_dependent else 0
        self.conv1 = nn.Conv2d(channels + extra, filters, 1)
        self.conv2 = nn.Conv2d(filters + extra, filters, 3, padding=1)
        self.conv3 = nn.Conv2d(filters + extra, out_channels or channels, 1)

    def _cat(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([torch.ones_like(x[:, :1]) * t, x], 1) if self.time_dependent else x

    def forward(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv1(self._cat(t, x)))
        x = torch.relu(self.conv2(self._cat(t, x)))
        return self.conv3(self._cat(t, x))


class SecondOrderField(nn.Module):
    """State ``cat(x, v)`` along channels; returns ``cat(v, f(t, cat(x, v)))``."""

    def __init__(self, accel: nn.Module, channels: int):
        super().__init__()
        self.accel, self.channels = accel, channels

    def forward(self, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return torch.cat([z[:, self.channels:], self.accel(t, z)], 1)


class AugmentedODENet(ContinuousModel):
    """Pad ``augment_dim`` zero channels (ANODE) or append v(0) = g(x) (SONODE), integrate, read out.

    Args:
        block: the ODE block acting on the (augmented) state.
        in_channels, augment_dim: image channels and zero channels appended.
        image_size: side of the square image (for the linear head).
        num_classes: head outputs.
        velocity: SONODE's initial-velocity network, or ``None``; the head reads only x(T).
    """

    def __init__(self, block: ODEBlock, in_channels: int, augment_dim: int, image_size: int, num_classes: int,
                 velocity: nn.Module | None = None):
        super().__init__()
        self.block, self.augment_dim, self.velocity = block, augment_dim, velocity
        self.state_channels = in_channels + augment_dim
        self.head = nn.Linear(self.state_channels * image_size * image_size, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.augment_dim:
            x = torch.cat([x, x.new_zeros(x.shape[0], self.augment_dim, *x.shape[2:])], 1)
        if self.velocity is not None:
            x = torch.cat([x, self.velocity(x)], 1)
        z = self.block(x)[:, : self.state_channels]
        return self.head(torch.flatten(z, 1))


def _anode(num_classes: int, in_channels: int, image_size: int, filters: int, augment_dim: int,
           time_dependent: bool, options: dict) -> nn.Module:
    config, reg = split_options(options)
    channels = in_channels + augment_dim
    block = ODEBlock(DupontConvField(channels, filters, time_dependent=time_dependent), config, **reg)
    return AugmentedODENet(block, in_channels, augment_dim, image_size, num_classes)


def _register_anode(name: str, model: str, filters: int, augment_dim: int, in_channels: int, image_size: int) -> None:
    @register_model(name, family="continuous", paper=DUPONT19,
                    scheme=f"adaptive dopri5, {filters} filters + {augment_dim} augmented channels",
                    reference=[{"table_id": "DUPONT19_T1", "model": model}, {"table_id": "DUPONT19_REPRO", "model": model}],
                    method="dopri5", rtol=1e-3, atol=1e-3, adjoint=False, filters=filters, augment_dim=augment_dim)
    def factory(num_classes: int = 10, in_channels: int = in_channels, image_size: int = image_size,
                filters: int = filters, augment_dim: int = augment_dim, time_dependent: bool = False,
                **options) -> nn.Module:
        return _anode(num_classes, in_channels, image_size, filters, augment_dim, time_dependent, options)

    factory.__doc__ = (f"{model} of Dupont et al. ({filters} filters, {augment_dim} zero channels); "
                       "``options``: solver and RNODE keys. Shrink with ``filters``.")


for _args in (("node_mnist", "NODE", 92, 0, 1, 28), ("anode_mnist", "ANODE", 64, 5, 1, 28),
              ("node_cifar", "NODE", 125, 0, 3, 32), ("anode_cifar", "ANODE", 64, 10, 3, 32)):
    _register_anode(*_args)


def _register_sonode(name: str, in_channels: int, image_size: int) -> None:
    @register_model(name, family="continuous", paper=NORCLIFFE20,
                    scheme="adaptive dopri5 on (x, v), second order",
                    method="dopri5", rtol=1e-3, atol=1e-3, adjoint=False, filters=64)
    def factory(num_classes: int = 10, in_channels: int = in_channels, image_size: int = image_size,
                filters: int = 64, augment_dim: int = 0, time_dependent: bool = False, **options) -> nn.Module:
        config, reg = split_options(options)
        c = in_channels + augment_dim
        field = SecondOrderField(DupontConvField(2 * c, filters, out_channels=c, time_dependent=time_dependent), c)
        velocity = nn.Conv2d(c, c, 3, padding=1)
        return AugmentedODENet(ODEBlock(field, config, **reg), in_channels, augment_dim, image_size, num_classes,
                               velocity=velocity)

    factory.__doc__ = "Second-order Neural ODE on the image (x, v) state; shrink with ``filters``."


_register_sonode("sonode_mnist", 1, 28)
_register_sonode("sonode_cifar", 3, 32)
