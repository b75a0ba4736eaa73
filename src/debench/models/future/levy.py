"""Lévy noise for SDE blocks: alpha-stable and compound-Poisson increments, and the Lévy-Euler step.

The driving process ``L`` is the sum of

* a symmetric-or-skewed alpha-stable motion with ``E exp(i u L_t) = exp(-t |u|^alpha / 2)`` when
  ``beta = 0``: increments over ``dt`` are ``(dt / 2)^(1/alpha) S`` with ``S ~ S_alpha(1, beta, 0)``
  (Samorodnitsky-Taqqu parametrisation) drawn by Chambers-Mallows-Stuck (1976, with Weron's 1996
  correction). At ``alpha = 2`` this is Brownian motion exactly: ``S ~ N(0, 2)``, increment
  ``N(0, dt)``; there we draw ``sqrt(2) N(0, 1)``, the same law as the CMS formula, so the
  ``alpha = 2`` model is the Gaussian Euler-Maruyama model draw for draw;
* an optional compound Poisson process: jumps at rate ``jump_rate``, each ``N(0, jump_scale^2)``;
  over ``dt`` the sum is ``jump_scale sqrt(N) Z`` with ``N ~ Poisson(jump_rate dt)``.

:func:`levy_euler` integrates ``dh = f(t, h) dt + g(t, h) dL`` (diagonal noise) with the Euler
scheme, the Euler-Maruyama scheme when ``L`` is Brownian.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch


def stable_cms(shape, alpha: float, beta: float = 0.0, generator: torch.Generator | None = None,
               device=None, dtype=torch.float32) -> torch.Tensor:
    """Standard alpha-stable samples ``S_alpha(1, beta, 0)`` by Chambers-Mallows-Stuck.

    Args:
        shape: output shape.
        alpha: stability index in (0, 2].
        beta: skewness in [-1, 1].
        generator, device, dtype: as for ``torch.rand``.

    Returns:
        Samples; characteristic function ``exp(-|u|^alpha (1 - i beta sign(u) tan(pi alpha / 2)))``
        for ``alpha != 1``.

    Raises:
        ValueError: naming ``alpha`` or ``beta`` when out of range.
    """
    if not 0.0 < alpha <= 2.0:
        raise ValueError(f"model arg 'alpha' must lie in (0, 2], got {alpha}")
    if not -1.0 <= beta <= 1.0:
        raise ValueError(f"model arg 'beta' must lie in [-1, 1], got {beta}")
    if alpha == 2.0:
        return math.sqrt(2.0) * torch.randn(shape, generator=generator, device=device, dtype=dtype)
    u = torch.rand(shape, generator=generator, device=device, dtype=torch.float64)
    e = torch.rand(shape, generator=generator, device=device, dtype=torch.float64)
    v = math.pi * (u.clamp(1e-12, 1 - 1e-12) - 0.5)  # uniform on (-pi/2, pi/2)
    w = -torch.log1p(-e.clamp(max=1 - 1e-16))  # Exp(1)
    if alpha == 1.0:
        half = math.pi / 2 + beta * v
        x = (2 / math.pi) * (half * torch.tan(v) - beta * torch.log((math.pi / 2) * w * torch.cos(v) / half))
    else:
        t = beta * math.tan(math.pi * alpha / 2)
        b, s = math.atan(t) / alpha, (1 + t * t) ** (1 / (2 * alpha))
        x = (s * torch.sin(alpha * (v + b)) / torch.cos(v) ** (1 / alpha)
             * (torch.cos(v - alpha * (v + b)) / w) ** ((1 - alpha) / alpha))
    return x.to(dtype)


@dataclass(frozen=True)
class LevyNoise:
    """Increments of the driving Lévy process (see the module docstring).

    Attributes:
        alpha: stability index in (0, 2]; 2 is Brownian motion.
        beta: skewness of the stable part.
        jump_rate: compound-Poisson jumps per unit time (0: none).
        jump_scale: standard deviation of one jump.
    """

    alpha: float = 2.0
    beta: float = 0.0
    jump_rate: float = 0.0
    jump_scale: float = 1.0

    def __post_init__(self) -> None:
        stable_cms((0,), self.alpha, self.beta)  # validates alpha, beta
        if self.jump_rate < 0 or self.jump_scale < 0:
            raise ValueError(f"model args 'jump_rate' and 'jump_scale' must be >= 0, got {self.jump_rate}, "
                             f"{self.jump_scale}")

    def increment(self, like: torch.Tensor, dt: float, generator: torch.Generator | None = None) -> torch.Tensor:
        """One increment ``L_{t+dt} - L_t`` shaped, typed and placed like ``like``."""
        kw = dict(generator=generator, device=like.device, dtype=like.dtype)
        out = (dt / 2) ** (1 / self.alpha) * stable_cms(like.shape, self.alpha, self.beta, **kw)
        if self.jump_rate > 0:
            n = torch.poisson(torch.full(like.shape, self.jump_rate * dt, device=like.device, dtype=like.dtype),
                              generator=generator)
            out = out + self.jump_scale * n.sqrt() * torch.randn(like.shape, **kw)
        return out


def levy_euler(f: Callable, g: Callable, h0: torch.Tensor, noise: LevyNoise, t1: float = 1.0, steps: int = 10,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """``h(t1)`` of ``dh = f(t, h) dt + g(t, h) dL`` by ``steps`` Euler steps.

    Args:
        f, g: drift and diffusion, called as ``f(t, h)``; ``g`` multiplies ``dL`` elementwise.
        h0: initial state.
        noise: the driving process.
        t1, steps: interval end and number of equal steps.
        generator: random generator (default: torch's global one).

    Returns:
        The state at ``t1``.
    """
    dt, h = t1 / steps, h0
    for k in range(steps):
        t = k * dt
        h = h + dt * f(t, h) + g(t, h) * noise.increment(h, dt, generator)
    return h
