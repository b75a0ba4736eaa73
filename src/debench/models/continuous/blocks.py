"""Building blocks shared by the continuous classifiers: time-concatenated layers, the ODE
block, and the mixin that implements the trainer's optional hooks.

Every continuous factory takes the same options (:data:`OPTION_KEYS`): the solver's
(:class:`~debench.models.continuous.solver.SolverConfig`) and the RNODE regularizer weights
``kinetic_energy`` and ``jacobian_norm``. :func:`split_options` checks them, so a misspelt key
is a configuration error, not a silent default.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import torch
import torch.nn as nn

from debench.models.continuous.fields import AugmentedField
from debench.models.continuous.solver import CountedDynamics, SolverConfig, collect_stats, solve

REGULARIZER_KEYS = ("kinetic_energy", "jacobian_norm", "noise")
OPTION_KEYS = tuple(f.name for f in fields(SolverConfig)) + REGULARIZER_KEYS


def split_options(options: dict[str, Any], extra: tuple[str, ...] = ()) -> tuple[SolverConfig, dict[str, Any]]:
    """Split a factory's ``**options`` into the solver config and the regularizer settings.

    Args:
        options: keyword arguments from the experiment's ``model_args``.
        extra: further keys the caller accepts; they stay in the returned dict.

    Returns:
        ``(SolverConfig, rest)`` where ``rest`` holds the regularizer keys and ``extra`` keys given.

    Raises:
        TypeError: for a key that is neither a solver option, a regularizer weight nor in ``extra``.
    """
    unknown = sorted(set(options) - set(OPTION_KEYS) - set(extra))
    if unknown:
        raise TypeError(f"unknown continuous-model option(s) {unknown}; accepted: {sorted(OPTION_KEYS + extra)}")
    rest = dict(options)
    return SolverConfig.from_kwargs(rest), rest


class ConcatConv2d(nn.Module):
    """Conv2d whose input gets one extra channel filled with the time t (Chen et al. 2018)."""

    def __init__(self, dim_in: int, dim_out: int, ksize: int = 3, stride: int = 1, padding: int = 1, bias: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(dim_in + 1, dim_out, ksize, stride, padding, bias=bias)

    def forward(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        tt = torch.ones_like(x[:, :1]) * t
        return self.conv(torch.cat([tt, x], 1))


def group_norm(dim: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(32, dim), dim)


class ConvODEFunc(nn.Module):
    """ODE-Net's f (odenet_mnist of Chen et al.): GN-ReLU-ConcatConv-GN-ReLU-ConcatConv-GN."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm1, self.conv1 = group_norm(dim), ConcatConv2d(dim, dim)
        self.norm2, self.conv2 = group_norm(dim), ConcatConv2d(dim, dim)
        self.norm3 = group_norm(dim)

    def forward(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(t, torch.relu(self.norm1(x)))
        out = self.conv2(t, torch.relu(self.norm2(out)))
        return self.norm3(out)


class ODEBlock(nn.Module):
    """z(T) from z(0) = input by integrating ``f``; with RNODE weights, also the regularizer.

    Args:
        f: vector field ``f(t, z)``.
        config: solver config.
        kinetic_energy, jacobian_norm: RNODE weights; while training with either > 0 the block
            integrates both integrands and keeps ``weight * batch mean`` in :attr:`reg`.
        noise: Hutchinson noise of the Jacobian-norm estimate.
    """

    def __init__(self, f: nn.Module, config: SolverConfig, kinetic_energy: float = 0.0,
                 jacobian_norm: float = 0.0, noise: str = "gaussian"):
        super().__init__()
        self.field = AugmentedField(f, noise=noise)
        self.dyn = CountedDynamics(self.field, config)
        self.kinetic_energy, self.jacobian_norm = float(kinetic_energy), float(jacobian_norm)
        self.reg: torch.Tensor | None = None

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        regularize = self.training and torch.is_grad_enabled() and (self.kinetic_energy or self.jacobian_norm)
        self.field.new_solve(track_reg=bool(regularize))
        if not regularize:
            self.reg = None
            return solve(self.dyn, z)
        zero = z.new_zeros(z.shape[0])
        z, kinetic, jacobian = solve(self.dyn, (z, zero, zero))
        self.reg = self.kinetic_energy * kinetic.mean() + self.jacobian_norm * jacobian.mean()
        return z


class ContinuousModel(nn.Module):
    """Mixin: ``debench_stats`` (NFE counters) and ``regularization_loss`` (RNODE terms)."""

    def debench_stats(self) -> dict[str, int]:
        """``{"nfe_forward": n, "nfe_backward": m}`` since the last call, then reset.

        ``nfe_backward`` counts evaluations of the adjoint solve; it is 0 without the adjoint,
        where autograd back-propagates through the stored solver graph instead.
        """
        return collect_stats(self)

    def regularization_loss(self) -> torch.Tensor:
        """Sum of the weighted RNODE terms of the last training forward (0 when off)."""
        terms = [m.reg for m in self.modules() if m is not self and getattr(m, "reg", None) is not None]
        if not terms:
            return next(self.parameters()).new_zeros(())
        return torch.stack(terms).sum()
