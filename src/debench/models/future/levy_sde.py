"""Lévy-driven Neural SDE classifiers: the Neural SDE of Liu et al. (2019) with alpha-stable and
compound-Poisson noise in place of Brownian motion.

:class:`LevySDEClassifier` is a thin wrapper: it takes its stem, drift, diffusion and head as
modules and integrates ``dh = f(t, h) dt + g(t, h) dL`` on ``[0, t1]`` with
:func:`~debench.models.future.levy.levy_euler`, so any Neural SDE's modules can be plugged in.
The registered models build the authors' layout (github.com/xuanqing94/NeuralSDE): one unpadded
3x3 conv to 64 channels (32x32 -> 30x30), the SDE on the 30x30 grid with a three-conv
time-conditioned drift and multiplicative noise ``g = sigma h``, then GN-ReLU-pool-linear.
``alpha = 2`` without jumps is that Gaussian Neural SDE (Euler-Maruyama). Robustness is the
Neural SDE's Gaussian input-perturbation curve, so the rows sit in the ``neural_sde`` table.

The alpha sweep (``levy_sde_cifar_a15`` against ``levy_sde_cifar_a2``) and the jump sweep
(``jump_sde_cifar`` against ``levy_sde_cifar_a2``) hold everything but the noise at the registered
Neural SDE's settings (``neural_sde_cifar``; issue 27, point 4): ``sigma = 0.5``, 11 steps of
1/11 on ``[0, 1]`` with the drift seeing ``k / 11`` (the authors' ``sdeint_euler`` at ``dt = 0.1``),
one noise path at evaluation (``eval_samples = 1``), fp32 under ``amp: auto``. So
``levy_sde_cifar_a2`` is ``neural_sde_cifar`` draw for draw (tests/test_faithful_levy_sweep.py).
Before, the Lévy models used ``sigma = 0.1``, 10 steps and 10 evaluation paths, so "alpha-stable
against Brownian" also compared two noise scales and grids.
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
        eval_samples: noise paths whose logits are averaged in eval mode (1: the Neural SDE
            authors' single path).
        perturb_sigmas: input-noise strengths of :meth:`extra_eval_metrics`.
    """

    def __init__(self, stem: nn.Module, drift: nn.Module, diffusion: nn.Module, head: nn.Module, noise: LevyNoise,
                 t1: float = 1.0, steps: int = 11, eval_samples: int = 1,
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


# The Neural SDE's settings (neural_sde_cifar) every sweep member shares; only alpha and the jumps vary.
SWEEP_SIGMA, SWEEP_STEPS, SWEEP_EVAL_SAMPLES = 0.5, 11, 1
LEVY_FP32 = ("the Neural SDE's precision: xuanqing94/NeuralSDE@0036314 sde_classifier.py trains in fp32; "
             "the alpha and jump sweeps are compared with it at that precision")


def _register(name: str, alpha: float, jump_rate: float, what: str) -> None:
    @register_model(name, family="stochastic", paper=LIU19 + "; " + what,
                    scheme=f"Lévy-Euler, {what}, 11 steps of 1/11", reference=[], precision="fp32",
                    precision_source=LEVY_FP32, width=64, alpha=alpha, jump_rate=jump_rate, sigma=SWEEP_SIGMA,
                    steps=SWEEP_STEPS, eval_samples=SWEEP_EVAL_SAMPLES)
    def factory(num_classes: int = 10, in_channels: int = 3, image_size: int = 32, width: int = 64,
                alpha: float = alpha, beta: float = 0.0, jump_rate: float = jump_rate, jump_scale: float = 1.0,
                sigma: float = SWEEP_SIGMA, t1: float = 1.0, steps: int = SWEEP_STEPS,
                eval_samples: int = SWEEP_EVAL_SAMPLES,
                perturb_sigmas: Sequence[float] = (0.0, 0.1, 0.2, 0.5), drift_depth: int = 3) -> nn.Module:
        modules = authors_layout(num_classes, in_channels, width, sigma, drift_depth)
        return LevySDEClassifier(*modules, LevyNoise(alpha, beta, jump_rate, jump_scale), t1, steps, eval_samples,
                                 perturb_sigmas)

    factory.__doc__ = f"Neural SDE classifier (authors' layout) driven by {what}."


_register("levy_sde_cifar_a15", 1.5, 0.0, "1.5-stable noise")
_register("levy_sde_cifar_a2", 2.0, 0.0, "Brownian noise (alpha = 2)")
_register("jump_sde_cifar", 2.0, 1.0, "Brownian noise plus compound-Poisson jumps (rate 1)")
