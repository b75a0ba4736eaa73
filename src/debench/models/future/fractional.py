"""Fractional-order Neural ODEs: Caputo ``D^alpha h = f(t, h)``, ``0 < alpha <= 1``, by Grünwald-Letnikov.

We follow FROND (Kang, Zhao, Ding, Song, Ding, Tay, Tay, "Unleashing the Potential of Fractional
Calculus in Graph Neural Networks with FROND", ICLR 2024), whose solver package torchfde offers
the explicit Grünwald-Letnikov scheme (method ``gl``), here applied to a conv field. With the
weights ``w_0 = 1, w_j = w_{j-1} (1 - (alpha + 1) / j)`` (the signed binomials ``(-1)^j C(alpha, j)``)
and step ``dt = t1 / steps``, the Caputo derivative of ``h`` at ``t_n`` is approximated by
``dt^-alpha sum_{j=0..n} w_j (h_{n-j} - h_0)``; setting it to ``f(t_{n-1}, h_{n-1})`` gives

    h_n = h_{n-1} + dt^alpha f(t_{n-1}, h_{n-1}) - sum_{j=1..n-1} c_j (h_{n-j} - h_0),
    c_1 = 1 - alpha,  c_j = w_j (j >= 2),

(the same recursion as FractionalDiffEq.jl's ``GL`` solver, src/singletermfode/GL.jl, for zero
initial value). At ``alpha = 1`` every ``c_j`` is exactly 0 and the step is forward Euler, the
ResNet / Neural ODE step. Every past state enters every step: memory grows as ``steps + 1`` stored
states and cost as ``steps (steps - 1) / 2`` history terms per block (reported per forward).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn

from debench.models.continuous.solver import CountedDynamics, SolverConfig
from debench.models.future.common import ConvField, cifar_net
from debench.registry import register_model

KANG24 = ("Kang, Zhao, Ding, Song, Ding, Tay, Tay. Unleashing the Potential of Fractional Calculus in Graph "
          "Neural Networks with FROND. ICLR 2024")


def check_alpha(alpha: float) -> float:
    """``alpha`` as a float. Raises ValueError naming ``alpha`` unless ``0 < alpha <= 1``."""
    if not 0.0 < float(alpha) <= 1.0:
        raise ValueError(f"model arg 'alpha' must lie in (0, 1], got {alpha}")
    return float(alpha)


def gl_weights(alpha: float, n: int) -> list[float]:
    """Grünwald-Letnikov weights ``w_0 .. w_n`` = ``(-1)^j C(alpha, j)``."""
    w = [1.0]
    for j in range(1, n + 1):
        w.append(w[-1] * (1.0 - (alpha + 1.0) / j))
    return w


def gl_derivative(values: torch.Tensor, alpha: float, dt: float) -> torch.Tensor:
    """Caputo derivative of order ``alpha`` at the last of equally spaced ``values`` (GL sum).

    Args:
        values: samples ``v_0 .. v_n`` along dim 0 at ``t_j = j dt``.
        alpha: order in (0, 1].
        dt: spacing.

    Returns:
        ``dt^-alpha sum_j w_j (v_{n-j} - v_0)``.
    """
    n = values.shape[0] - 1
    w = torch.tensor(gl_weights(alpha, n), dtype=values.dtype, device=values.device)
    return (w * (values.flip(0) - values[0])).sum(0) / dt ** alpha


def solve_caputo_gl(f: Callable, h0: torch.Tensor, alpha: float, t1: float = 1.0, steps: int = 8) -> torch.Tensor:
    """``h(t1)`` of ``D^alpha h = f(t, h)``, ``h(0) = h0``, by the explicit GL scheme above.

    Args:
        f: the field ``f(t, h)``.
        h0: initial state.
        alpha: order in (0, 1]; 1 is forward Euler exactly.
        t1, steps: interval end and number of equal steps.

    Returns:
        The state at ``t1``.

    Raises:
        ValueError: for ``alpha`` outside (0, 1].
    """
    alpha, dt = check_alpha(alpha), t1 / steps
    c = [0.0, 1.0 - alpha] + gl_weights(alpha, steps)[2:]
    hs = [h0]
    for n in range(1, steps + 1):
        h = hs[-1] + dt ** alpha * f((n - 1) * dt, hs[-1])
        for j in range(1, n):  # j = n would weigh h_0 - h_0 = 0
            if c[j]:
                h = h - c[j] * (hs[n - j] - h0)
        hs.append(h)
    return hs[-1]


class FractionalBlock(nn.Module):
    """``h(t1)`` of the Caputo equation from ``h(0)`` = input; evaluations counted.

    Args:
        f: the field ``f(t, h)``.
        alpha: order in (0, 1].
        t1, steps: see :func:`solve_caputo_gl`.
    """

    def __init__(self, f: nn.Module, alpha: float = 0.5, t1: float = 1.0, steps: int = 8):
        super().__init__()
        self.alpha, self.t1, self.steps = check_alpha(alpha), float(t1), int(steps)
        self.dyn = CountedDynamics(f, SolverConfig(method="euler", step_size=t1 / steps, t1=t1))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return solve_caputo_gl(self.dyn, h, self.alpha, self.t1, self.steps)

    def extra_metrics(self) -> dict[str, float]:
        """History terms one forward adds (``steps (steps - 1) / 2``, 0 at alpha = 1) and states kept."""
        terms = 0 if self.alpha == 1.0 else self.steps * (self.steps - 1) // 2
        return {"history_terms": float(terms), "stored_states": float(self.steps + 1)}


def _register(name: str, alpha: float, steps: int) -> None:
    @register_model(name, family="continuous", paper=KANG24,
                    scheme=f"explicit Grünwald-Letnikov, alpha={alpha:g}, {steps} steps, 3 stages",
                    evals_per_forward=None, reference=[], alpha=alpha, steps=steps, widths=(32, 64, 128))
    def factory(num_classes: int = 10, in_channels: int = 3, image_size: int = 32, alpha: float = alpha,
                t1: float = 1.0, steps: int = steps, widths: tuple[int, ...] = (32, 64, 128)) -> nn.Module:
        return cifar_net(lambda w: FractionalBlock(ConvField(w), alpha, t1, steps), widths, num_classes, in_channels)

    factory.__doc__ = (f"Fractional Neural ODE (Caputo, order {alpha:g}, {steps} GL steps per stage) in ODE-Net "
                       "CIFAR's frame; ``alpha``, ``steps``, ``widths`` may be overridden.")


for _steps in (4, 8, 16):
    _register(f"frac_ode_cifar_a05_n{_steps}", 0.5, _steps)
_register("frac_ode_cifar_a1_n8", 1.0, 8)
