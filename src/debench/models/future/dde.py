"""Neural delay differential equations (Zhu, Guo, Lin, ICLR 2021): ``dh/dt = f(t, h(t), h(t - tau))``.

The state on ``[0, t1]`` starts from a history function on ``[-tau, 0]``: the constant
``h(s) = h(0)`` (the stem's output), the NDDEs' initial function per Zhu, Shen et al., AAAI 2022, Fig. 4) and is integrated by the method of steps on a fixed grid of
``steps`` equal steps: ``tau`` must be a whole number ``m >= 1`` of steps, so every delayed value
the scheme needs lies on the grid already computed (or in the history). An explicit Runge-Kutta
stage at ``t_k + c dt`` needs ``h(t_k + c dt - tau)``: the grid value when ``c`` is 0 or 1, the
linear interpolant between the two grid values otherwise (second-order accurate, so RK4 with
delay is a second-order method once the solution's derivative jumps at ``t = tau`` have passed).

No adaptive option: torchdiffeq (the solver every continuous model here uses) has no delay
argument, and the one PyTorch DDE solver we found (thibmonsel/torchdde) is an unreleased research
repository, not a maintained package. The authors' code is not public (zhuqunxi/NDDE README:
"will be released").
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn

from debench.models.continuous.solver import CountedDynamics, SolverConfig
from debench.models.future.common import ConvField, cifar_net
from debench.registry import register_model

ZHU21 = "Zhu, Guo, Lin. Neural Delay Differential Equations. ICLR 2021"

TABLEAUS = {  # explicit Runge-Kutta methods as (c, a, b)
    "euler": ((0.0,), ((),), (1.0,)),
    "midpoint": ((0.0, 0.5), ((), (0.5,)), (0.0, 1.0)),
    "rk4": ((0.0, 0.5, 0.5, 1.0), ((), (0.5,), (0.0, 0.5), (0.0, 0.0, 1.0)), (1 / 6, 1 / 3, 1 / 3, 1 / 6)),
}


def delay_steps(tau: float, t1: float, steps: int) -> int:
    """The delay as a whole number of grid steps.

    Raises:
        ValueError: naming ``tau`` when it is not a positive multiple of ``t1 / steps``.
    """
    m = tau * steps / t1
    if round(m) < 1 or abs(m - round(m)) > 1e-9:
        raise ValueError(f"model arg 'tau' = {tau} must be a positive multiple of the step t1/steps = {t1 / steps:g}")
    return round(m)


def solve_dde(f: Callable, h0: torch.Tensor, tau: float, t1: float = 1.0, steps: int = 10, method: str = "euler",
              history: Callable[[float], torch.Tensor] | None = None) -> torch.Tensor:
    """Integrate ``dh/dt = f(t, (h(t), h(t - tau)))`` from 0 to ``t1`` by the method of steps.

    Args:
        f: the field, called as ``f(t, (h, h_delayed))``.
        h0: state at t = 0.
        tau: the delay, a positive multiple of ``t1 / steps``.
        t1: end time.
        steps: equal steps on ``[0, t1]``.
        method: a key of :data:`TABLEAUS`.
        history: ``h(s)`` for ``s <= 0``; default the constant ``h0``.

    Returns:
        ``h(t1)``.

    Raises:
        ValueError: for an unknown method or a delay off the grid.
    """
    if method not in TABLEAUS:
        raise ValueError(f"model arg 'method' must be one of {sorted(TABLEAUS)}, got {method!r}")
    m, dt = delay_steps(tau, t1, steps), t1 / steps
    hist = history if history is not None else (lambda s: h0)
    hs = [h0]

    def delayed(k: int, c: float) -> torch.Tensor:
        j = k - m  # h(t_k + c dt - tau) = h(t_j + c dt)
        if j + c <= 0:
            return hist((j + c) * dt)
        return hs[j] if c == 0 else hs[j + 1] if c == 1 else (1 - c) * hs[j] + c * hs[j + 1]

    cs, a, b = TABLEAUS[method]
    for k in range(steps):
        h, t, ks = hs[k], k * dt, []
        for i, c in enumerate(cs):
            stage = h
            for aij, kj in zip(a[i], ks):
                if aij:
                    stage = stage + dt * aij * kj
            ks.append(f(t + c * dt, (stage, delayed(k, c))))
        hs.append(h + dt * sum(bi * ki for bi, ki in zip(b, ks) if bi))
    return hs[-1]


class DelayField(nn.Module):
    """``f(t, (h, h_tau))``: :class:`ConvField` on the channel concatenation of both states."""

    def __init__(self, dim: int):
        super().__init__()
        self.net = ConvField(dim, k=2)

    def forward(self, t, state: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        return self.net(t, torch.cat(state, 1))


class DDEBlock(nn.Module):
    """``h(t1)`` of the delay equation from ``h(0)`` = input, constant history; evaluations counted.

    Args:
        f: the delay field.
        tau, t1, steps, method: see :func:`solve_dde`.
    """

    def __init__(self, f: nn.Module, tau: float = 0.5, t1: float = 1.0, steps: int = 4, method: str = "rk4"):
        super().__init__()
        delay_steps(tau, t1, steps)
        if method not in TABLEAUS:
            raise ValueError(f"model arg 'method' must be one of {sorted(TABLEAUS)}, got {method!r}")
        self.dyn = CountedDynamics(f, SolverConfig(method=method, step_size=t1 / steps, t1=t1))
        self.tau, self.t1, self.steps, self.method = float(tau), float(t1), int(steps), method

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return solve_dde(self.dyn, h, self.tau, self.t1, self.steps, self.method)


@register_model("ndde_cifar", family="continuous", paper=ZHU21,
                scheme="method of steps, fixed-grid rk4 (delayed stages interpolated), 3 stages",
                evals_per_forward=None, reference=[], tau=0.5, steps=4, method="rk4", widths=(32, 64, 128))
def ndde_cifar(num_classes: int = 10, in_channels: int = 3, image_size: int = 32, tau: float = 0.5, t1: float = 1.0,
               steps: int = 4, method: str = "rk4", widths: tuple[int, ...] = (32, 64, 128)) -> nn.Module:
    """Neural DDE classifier in ODE-Net CIFAR's frame; ``tau``, ``steps`` and ``method`` are our choices.

    Args:
        tau: the delay (a multiple of ``t1 / steps``).
        t1, steps, method: integration interval, grid and Runge-Kutta method (:data:`TABLEAUS`).
        widths: channels per stage.
    """
    return cifar_net(lambda w: DDEBlock(DelayField(w), tau, t1, steps, method), widths, num_classes, in_channels)
