"""Update rules of the numerical schemes the discrete models stand for, as pure functions.

Every rule takes the residual function ``f`` (any callable) and the state, and returns the next
state, so each model's block is one call of one rule and each rule can be checked against its
closed form on a linear ``f``. Runge-Kutta methods are data: a Butcher tableau (``a``, ``b``)
with unit step, as in torchdiffeq.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import torch

Fn = Callable[[torch.Tensor], torch.Tensor]


class Tableau(NamedTuple):
    """Explicit Butcher tableau with unit step: ``a`` strictly lower triangular rows, ``b`` weights."""

    a: tuple[tuple[float, ...], ...]
    b: tuple[float, ...]


TABLEAUX = {
    "euler": Tableau(a=((),), b=(1.0,)),
    "midpoint": Tableau(a=((), (0.5,)), b=(0.0, 1.0)),
    "heun": Tableau(a=((), (1.0,)), b=(0.5, 0.5)),
    "rk4": Tableau(a=((), (0.5,), (0.0, 0.5), (0.0, 0.0, 1.0)), b=(1 / 6, 1 / 3, 1 / 3, 1 / 6)),
}


def rk_step(f: Fn, x: torch.Tensor, tableau: Tableau) -> torch.Tensor:
    """One explicit Runge-Kutta step of unit size: ``x + sum_i b_i k_i``.

    Args:
        f: the residual function, evaluated ``len(tableau.b)`` times.
        x: the state.
        tableau: the method (see :data:`TABLEAUX`).

    Returns:
        The next state.
    """
    ks: list[torch.Tensor] = []
    for row in tableau.a:
        xi = x
        for aij, kj in zip(row, ks):
            if aij:
                xi = xi + aij * kj
        ks.append(f(xi))
    out = x
    for bi, ki in zip(tableau.b, ks):
        if bi:
            out = out + bi * ki
    return out


def lm_step(f: Fn, u: torch.Tensor, u_prev: torch.Tensor, k: torch.Tensor | float) -> torch.Tensor:
    """Two-step linear multistep update of LM-ResNet: ``(1 - k) u_n + k u_{n-1} + f(u_n)``."""
    return (1 - k) * u + k * u_prev + f(u)


def poly2_step(f: Fn, x: torch.Tensor) -> torch.Tensor:
    """PolyNet's poly-2 block ``x + f(x) + f(f(x))``: (I - f)^{-1} x truncated after f^2."""
    fx = f(x)
    return x + fx + f(fx)


def leapfrog_step(f: Fn, y_prev: torch.Tensor, y: torch.Tensor, h: float) -> torch.Tensor:
    """Second-order (leapfrog) step for ``y'' = -f(y)``: ``2 y_j - y_{j-1} - h^2 f(y_j)``."""
    return 2 * y - y_prev - (h * h) * f(y)


def midpoint2_step(f: Fn, y_prev: torch.Tensor, y: torch.Tensor, h: float) -> torch.Tensor:
    """Explicit midpoint (two-step) rule of Chang et al.: ``y_{j-1} + 2 h f(y_j)``."""
    return y_prev + (2 * h) * f(y)


def verlet_step(f1: Fn, f2: Fn, y: torch.Tensor, z: torch.Tensor, h: float):
    """Symplectic Verlet step of a Hamiltonian system split in ``(y, z)``.

    ``y_{j+1} = y_j + h f1(z_j)``, then ``z_{j+1} = z_j - h f2(y_{j+1})``.

    Returns:
        ``(y_{j+1}, z_{j+1})``.
    """
    y = y + h * f1(z)
    return y, z - h * f2(y)


def momentum_step(f: Fn, x: torch.Tensor, v: torch.Tensor, gamma: float):
    """Momentum ResNet step: ``v' = gamma v + (1 - gamma) f(x)``, ``x' = x + v'``.

    Returns:
        ``(x', v')``.
    """
    v = gamma * v + (1 - gamma) * f(x)
    return x + v, v


def momentum_inverse(f: Fn, x_next: torch.Tensor, v_next: torch.Tensor, gamma: float):
    """Exact inverse of :func:`momentum_step`: ``x = x' - v'``, ``v = (v' - (1 - gamma) f(x)) / gamma``."""
    x = x_next - v_next
    return x, (v_next - (1 - gamma) * f(x)) / gamma
