"""Continuous normalizing flow layers (Chen et al. 2018; FFJORD, Grathwohl et al. ICLR 2019).

A :class:`CNF` maps ``(z, l)`` to ``(z(T), l(T))`` with dz/dt = f(t, z) and
dl/dt = -tr(df/dz), so that log p(z(0)) = log p(z(T)) - l(T) + l(0). Training and evaluation may
use different solvers (RNODE trains on a fixed rk4 grid and evaluates with dopri5 at 1e-5): the
layer switches with ``train()``/``eval()``. With RNODE weights it also integrates the kinetic
energy and the Jacobian norm and keeps their weighted batch mean in :attr:`CNF.reg`: as in the
authors' ``lib/layers/wrappers/cnf_regularization.py`` (cfinlay/ffjord-rnode), the kinetic
integrand is ``0.5 * mean(f^2)`` (``quadratic_cost``) and the Jacobian integrand
``mean((eps^T df/dz)^2)`` without the half (``jacobian_frobenius_regularization_fn``).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from debench.models.continuous.blocks import ConcatConv2d
from debench.models.continuous.fields import AugmentedField
from debench.models.continuous.solver import CountedDynamics, SolverConfig, solve


class ConcatSquashLinear(nn.Module):
    """FFJORD's time-conditioned linear layer: W x * sigmoid(a t + b) + c t."""

    def __init__(self, dim_in: int, dim_out: int):
        super().__init__()
        self.layer = nn.Linear(dim_in, dim_out)
        self.gate, self.bias = nn.Linear(1, dim_out), nn.Linear(1, dim_out, bias=False)

    def forward(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        tt = t.reshape(1, 1).to(x)
        return self.layer(x) * torch.sigmoid(self.gate(tt)) + self.bias(tt)


def zero_last_weights(layers: nn.ModuleList) -> None:
    """Zero every ``*weight`` parameter of the last layer (the authors' ``ODEnet(zero_last_weight=True)``).

    The field then starts as ``f(t, z) = bias``: a near-identity flow, as RNODE's ``--zero_last``.
    """
    with torch.no_grad():
        for name, p in layers[-1].named_parameters():
            if name.endswith("weight"):
                p.zero_()


class MLPField(nn.Module):
    """Vector field for points: ConcatSquashLinear layers of widths ``hidden`` with tanh.

    ``zero_last`` zeroes the last layer's weights (:func:`zero_last_weights`).
    """

    def __init__(self, dim: int, hidden: tuple[int, ...] = (64, 64, 64), zero_last: bool = False):
        super().__init__()
        dims = (dim, *hidden, dim)
        self.layers = nn.ModuleList(ConcatSquashLinear(a, b) for a, b in zip(dims, dims[1:]))
        if zero_last:
            zero_last_weights(self.layers)

    def forward(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(t, x)
            if i < len(self.layers) - 1:
                x = torch.tanh(x)
        return x


class ConvField(nn.Module):
    """Vector field for images: ConcatConv2d 3x3 layers of widths ``hidden`` with softplus.

    ``zero_last`` zeroes the last layer's weights (:func:`zero_last_weights`).
    """

    def __init__(self, channels: int, hidden: tuple[int, ...] = (64, 64, 64), zero_last: bool = False):
        super().__init__()
        dims = (channels, *hidden, channels)
        self.layers = nn.ModuleList(ConcatConv2d(a, b) for a, b in zip(dims, dims[1:]))
        if zero_last:
            zero_last_weights(self.layers)

    def forward(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(t, x)
            if i < len(self.layers) - 1:
                x = F.softplus(x)
        return x


class CNF(nn.Module):
    """One continuous normalizing flow over ``[0, T]`` (``T = train_config.t1``).

    Args:
        f: vector field ``f(t, z)``.
        train_config, eval_config: solvers in training and evaluation mode.
        divergence: ``exact`` or ``hutchinson`` trace of df/dz.
        noise: ``rademacher`` or ``gaussian`` Hutchinson noise (drawn once per solve).
        kinetic_energy, jacobian_norm: RNODE weights.
    """

    def __init__(self, f: nn.Module, train_config: SolverConfig, eval_config: SolverConfig | None = None,
                 divergence: str = "hutchinson", noise: str = "rademacher",
                 kinetic_energy: float = 0.0, jacobian_norm: float = 0.0):
        super().__init__()
        self.field = AugmentedField(f, divergence, noise)
        self.dyn = CountedDynamics(self.field, train_config)
        self.train_config, self.eval_config = train_config, eval_config or train_config
        self.kinetic_energy, self.jacobian_norm = float(kinetic_energy), float(jacobian_norm)
        self.reg: torch.Tensor | None = None

    def forward(self, z: torch.Tensor, logp: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Integrate ``(z, logp)`` from 0 to T; ``logp`` gains -int tr(df/dz) dt."""
        self.dyn.config = self.train_config if self.training else self.eval_config
        regularize = self.training and torch.is_grad_enabled() and bool(self.kinetic_energy or self.jacobian_norm)
        self.field.new_solve(track_logp=True, track_reg=regularize)
        if not regularize:
            self.reg = None
            return solve(self.dyn, (z, logp))
        zero = logp.new_zeros(logp.shape)
        z, logp, kinetic, jacobian = solve(self.dyn, (z, logp, zero, zero))
        self.reg = self.kinetic_energy * 0.5 * kinetic.mean() + self.jacobian_norm * jacobian.mean()
        return z, logp

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        """Integrate z from T back to 0 (sampling); no log-density."""
        self.dyn.config = self.train_config if self.training else self.eval_config
        self.field.new_solve()
        t = torch.tensor([self.dyn.config.t1, 0.0], dtype=z.dtype, device=z.device)
        return solve(self.dyn, z, t)


class Squeeze(nn.Module):
    """(C, H, W) -> (4C, H/2, W/2), volume preserving."""

    def forward(self, z: torch.Tensor, logp: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return F.pixel_unshuffle(z, 2), logp

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        return F.pixel_shuffle(z, 2)


def standard_normal_logprob(z: torch.Tensor) -> torch.Tensor:
    """log N(z; 0, I) summed over all but the batch dimension."""
    return (-0.5 * z.pow(2) - 0.5 * math.log(2 * math.pi)).flatten(1).sum(1)
