"""Reversible units as data: each scheme's step written as a list of :class:`Shear` updates.

The builders take the residual function(s) as modules so that tests can pass a linear map and
compare one unit with the closed-form step of :mod:`debench.models.discrete.schemes`.
"""

from __future__ import annotations

import torch.nn as nn

from debench.models.discrete.reversible import Shear


def revnet_unit(f: nn.Module, g: nn.Module) -> list[Shear]:
    """RevNet coupling: ``y1 = x1 + F(x2)``, ``y2 = x2 + G(y1)``."""
    return [Shear(f, target=0), Shear(g, target=1)]


def verlet_unit(f1: nn.Module, f2: nn.Module, h: float) -> list[Shear]:
    """Hamiltonian Verlet step on ``(y, z)``: ``y += h f1(z)``, then ``z -= h f2(y)``."""
    return [Shear(f1, target=0, c=h), Shear(f2, target=1, c=-h)]


def leapfrog_unit(f: nn.Module, h: float) -> list[Shear]:
    """Leapfrog on the window ``(y_{j-1}, y_j) -> (y_j, 2 y_j - y_{j-1} - h^2 f(y_j))``."""
    return [Shear(f, target=0, alpha=-1.0, beta=2.0, c=-h * h, swap=True)]


def midpoint_unit(f: nn.Module, h: float) -> list[Shear]:
    """Midpoint rule on the window ``(y_{j-1}, y_j) -> (y_j, y_{j-1} + 2 h f(y_j))``."""
    return [Shear(f, target=0, c=2 * h, swap=True)]


def momentum_unit(f: nn.Module, gamma: float) -> list[Shear]:
    """Momentum step on ``(x, v)``: ``v = gamma v + (1 - gamma) f(x)``, then ``x = x + v``."""
    return [Shear(f, target=1, alpha=gamma, c=1 - gamma), Shear(None, target=0, beta=1.0)]
