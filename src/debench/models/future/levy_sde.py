"""Lévy-driven Neural SDE classifiers: the Neural SDE of Liu et al. (2019) with alpha-stable and
compound-Poisson noise in place of Brownian motion.

:class:`LevySDEClassifier` is a thin wrapper: it takes its stem, drift, diffusion and head as
modules and integrates ``dh = f(t, h) dt + g(t, h) dL`` on ``[0, t1]`` with
:func:`~debench.models.future.levy.levy_euler`, so any Neural SDE's modules can be plugged in.
The registered models build the authors' layout (github.com/xuanqing94/NeuralSDE): one unpadded
3x3 conv to 64 channels (32x32 -> 30x30), the SDE on the 30x30 grid with a three-conv
time-conditioned drift and multiplicative noise ``g = sigma h``, then GN-ReLU-pool-linear.
``alpha = 2`` without jumps is that Gaussian Neural SDE (Euler-Maruyama). In eval mode the logits
are averaged over ``eval_samples`` noise paths; robustness is the Neural SDE's Gaussian
input-perturbation curve, so the rows sit in the ``neural_sde`` table.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn

from debench.models.future.levy import LevyNoise, levy_euler
from debench.models.stochastic.neural_sde import LIU19, ConvDrift, authors_head, robustness_curve
from debench.nfe import NFECounter
from debench.registry import register_model


class Multiplicative(nn.Module):
    """``g(t, h) = sigma h``."""

    def __init__(self, sigma: float):
        super().__init__()
        self.sigma = float(sigma)

    def forward(self, t, h: torch.Tensor) -> torch.Tensor:
        return self.sigma * h


class LevySDEClassifier(nn.Module):
    """Stem, one Lévy-driven SDE block, head; drift and diffusion evaluations counted.

    Args:
        stem, drift, diffusion, head: modules; ``drift(t, h)`` and ``diffusion(t, h)`` act on the
            stem's output shape.
        noise: the driving process.
        t1, steps: integration interval and number of Euler steps.
        eval_samples: noise paths whose logits are averaged in eval mode.
        perturb_sigmas: input-noise strengths of :meth:`extra_eval_metrics`.
    """

    def __init__(self, stem: nn.Module, drift: nn.Module, diffusion: nn.Module, head: nn.Module, noise: LevyNoise,
                 t1: float = 1.0, steps: int = 10, eval_samples: int = 10,
                 perturb_sigmas: Sequence[float] = (0.0, 0.1, 0.2, 0.5)):
        super().__init__()
        self.stem, self.drift, self.diffusion, self.head = stem, drift, diffusion, head
        self.noise, self.t1, self.steps, self.eval_samples = noise, float(t1), int(steps), int(eval_samples)
        self.perturb_sigmas = tuple(float(s) for s in perturb_sigmas)
        self.nfe_drift, self.nfe_diffusion = NFECounter(), NFECounter()

    def _f(self, t, h):
        self.nfe_drift.tick()
        return self.drift(t, h)

    def _g(self, t, h):
        self.nfe_diffusion.tick()
        return self.diffusion(t, h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h0 = self.stem(x)
        paths = 1 if self.training else max(1, self.eval_samples)
        logits = [self.head(levy_euler(self._f, self._g, h0, self.noise, self.t1, self.steps)) for _ in range(paths)]
        return logits[0] if paths == 1 else torch.stack(logits).mean(0)

    def debench_stats(self) -> dict[str, float]:
        """Drift and diffusion evaluations since the last call (backprop re-evaluates nothing)."""
        return {**self.nfe_drift.pop(), "nfe_diffusion": self.nfe_diffusion.pop()["nfe_forward"]}

    def extra_eval_metrics(self, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> dict[str, float]:
        """Test accuracy (%) under Gaussian input noise, keys ``acc_perturb_<sigma>``."""
        return robustness_curve(self, x, y, self.perturb_sigmas, batch_size)


def authors_layout(num_classes: int, in_channels: int, width: int, sigma: float, drift_depth: int = 3):
    """Stem, drift, diffusion and head of the authors' Neural SDE (see the module docstring): the
    rebuilt Gaussian model's own drift and head (:mod:`debench.models.stochastic.neural_sde`)."""
    stem = nn.Conv2d(in_channels, width, 3, 1, 0)
    return stem, ConvDrift(width, drift_depth), Multiplicative(sigma), authors_head(width, num_classes)


def _register(name: str, alpha: float, jump_rate: float, what: str) -> None:
    @register_model(name, family="stochastic", paper=LIU19 + "; " + what,
                    scheme=f"Lévy-Euler, {what}, fixed dt 0.1", reference=[], width=64, alpha=alpha,
                    jump_rate=jump_rate, sigma=0.1, steps=10, eval_samples=10)
    def factory(num_classes: int = 10, in_channels: int = 3, image_size: int = 32, width: int = 64,
                alpha: float = alpha, beta: float = 0.0, jump_rate: float = jump_rate, jump_scale: float = 1.0,
                sigma: float = 0.1, t1: float = 1.0, steps: int = 10, eval_samples: int = 10,
                perturb_sigmas: Sequence[float] = (0.0, 0.1, 0.2, 0.5), drift_depth: int = 3) -> nn.Module:
        modules = authors_layout(num_classes, in_channels, width, sigma, drift_depth)
        return LevySDEClassifier(*modules, LevyNoise(alpha, beta, jump_rate, jump_scale), t1, steps, eval_samples,
                                 perturb_sigmas)

    factory.__doc__ = f"Neural SDE classifier (authors' layout) driven by {what}."


_register("levy_sde_cifar_a15", 1.5, 0.0, "1.5-stable noise")
_register("levy_sde_cifar_a2", 2.0, 0.0, "Brownian noise (alpha = 2)")
_register("jump_sde_cifar", 2.0, 1.0, "Brownian noise plus compound-Poisson jumps (rate 1)")
