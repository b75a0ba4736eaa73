"""Neural SDE classifier (Liu, Xiao, Si, Cao, Kumar, Hsieh 2019): an ODE-Net with noise injected.

The hidden state of a conv net evolves as ``dh = f(h, t) dt + G(h, t) dW`` on ``t in [0, 1]``,
solved with torchsde at a fixed step ``dt`` (0.1 in the official code) and differentiated
through the solver. The drift ``f`` is a time-conditioned conv net (GroupNorm-ReLU-conv with the
time as an extra channel, as in ODE-Net); the diffusion is

- ``additive``: ``G = sigma``;
- ``multiplicative``: ``G = sigma * h``;
- ``dropout``: ``G = sigma * f(h, t)`` (the continuous-time limit of Gaussian dropout on ``f``);

and ``sigma = 0`` is the ODE-Net it regularizes. At evaluation the logits are averaged over
``eval_samples`` independent noise paths. :func:`robustness_curve` reports accuracy under Gaussian
input perturbations, the paper's robustness measure (its Fig. 3 uses input noise as well as
adversarial attacks; only Gaussian noise is implemented here).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from debench.registry import register_model

LIU19 = ("Liu, Xiao, Si, Cao, Kumar, Hsieh. Neural SDE: Stabilizing Neural ODE Networks with "
         "Stochastic Noise. arXiv 1906.02355 (2019)")
NOISE_TYPES = ("additive", "multiplicative", "dropout")
METHODS = ("euler", "milstein")


def _norm(c: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(32, c), c)


class TimeConv(nn.Conv2d):
    """3x3 conv that sees the time as one extra constant input channel."""

    def __init__(self, channels: int):
        super().__init__(channels + 1, channels, 3, 1, 1)

    def forward(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        tt = torch.ones_like(x[:, :1]) * t
        return super().forward(torch.cat([tt, x], 1))


class ConvDrift(nn.Module):
    """``f(h, t)``: (GN-ReLU-TimeConv) x depth, then GN."""

    def __init__(self, channels: int, depth: int = 2):
        super().__init__()
        self.norms = nn.ModuleList(_norm(channels) for _ in range(depth))
        self.convs = nn.ModuleList(TimeConv(channels) for _ in range(depth))
        self.out_norm = _norm(channels)

    def forward(self, t: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        for norm, conv in zip(self.norms, self.convs):
            h = conv(t, F.relu(norm(h)))
        return self.out_norm(h)


class ConvSDE(nn.Module):
    """The SDE in torchsde's interface on a flattened conv state (torchsde wants ``batch x d``).

    Counts drift and diffusion evaluations in plain Python integers (no device sync).
    """

    sde_type = "ito"
    noise_type = "diagonal"

    def __init__(self, drift: nn.Module, shape: tuple[int, int, int], noise: str, sigma: float):
        super().__init__()
        if noise not in NOISE_TYPES:
            raise ValueError(f"model arg 'noise' must be one of {NOISE_TYPES}, got {noise!r}")
        self.drift, self.shape, self.noise, self.sigma = drift, shape, noise, float(sigma)
        self.nfe_drift = self.nfe_diffusion = 0

    def _f(self, t, y):
        self.nfe_drift += 1
        return self.drift(t, y.view(-1, *self.shape)).flatten(1)

    def f(self, t, y):
        return self._f(t, y)

    def g(self, t, y):
        self.nfe_diffusion += 1
        if self.noise == "additive":
            return torch.full_like(y, self.sigma)
        if self.noise == "multiplicative":
            return self.sigma * y
        return self.sigma * self._f(t, y)

    def f_and_g(self, t, y):
        drift = self._f(t, y)
        if self.noise == "dropout":
            self.nfe_diffusion += 1
            return drift, self.sigma * drift
        return drift, self.g(t, y)


class NeuralSDEClassifier(nn.Module):
    """Downsampling stem, one SDE block on ``[0, 1]``, GN-ReLU-pool-linear head.

    Args:
        num_classes, in_channels: head and stem sizes.
        width: channels of the SDE state (the stem goes ``width/4 -> width/2 -> width`` with two
            stride-2 convs, so the state is ``width x H/4 x W/4``).
        image_size: input height/width (32 for CIFAR, 28 for MNIST).
        noise: ``additive``, ``multiplicative`` or ``dropout``.
        sigma: noise scale; 0 gives the ODE-Net (then only one path is evaluated).
        dt: fixed step of the solver.
        method: ``euler`` (Euler-Maruyama) or ``milstein``.
        eval_samples: noise paths whose logits are averaged in eval mode.
        perturb_sigmas: input-noise strengths (in units of the normalized input) reported by
            :meth:`extra_eval_metrics`.
        drift_depth: conv layers of the drift.
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 3, width: int = 64, image_size: int = 32,
                 noise: str = "additive", sigma: float = 0.1, dt: float = 0.1, method: str = "euler",
                 eval_samples: int = 10, perturb_sigmas: Sequence[float] = (0.0, 0.1, 0.2, 0.5),
                 drift_depth: int = 2):
        super().__init__()
        if method not in METHODS:
            raise ValueError(f"model arg 'method' must be one of {METHODS}, got {method!r}")
        if width % 4:
            raise ValueError(f"model arg 'width' must be a multiple of 4, got {width}")
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, width // 4, 3, 1, 1), _norm(width // 4), nn.ReLU(inplace=True),
            nn.Conv2d(width // 4, width // 2, 4, 2, 1), _norm(width // 2), nn.ReLU(inplace=True),
            nn.Conv2d(width // 2, width, 4, 2, 1),
        )
        side = image_size // 4
        self.sde = ConvSDE(ConvDrift(width, drift_depth), (width, side, side), noise, sigma)
        self.head = nn.Sequential(_norm(width), nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                  nn.Linear(width, num_classes))
        self.dt, self.method, self.eval_samples = dt, method, int(eval_samples)
        self.perturb_sigmas = tuple(float(s) for s in perturb_sigmas)
        self.register_buffer("ts", torch.tensor([0.0, 1.0]))

    def _path(self, h0: torch.Tensor) -> torch.Tensor:
        y0 = h0.flatten(1)
        if self.sde.sigma == 0.0:
            # No noise: the same fixed-step scheme without drawing a Brownian path.
            y, n = y0, max(1, round(1.0 / self.dt))
            for i in range(n):
                y = y + (1.0 / n) * self.sde.f(self.ts[:1] * 0 + i / n, y)
            return y.view_as(h0)
        import torchsde  # imported where used: training runs where torchsde is absent
        ys = torchsde.sdeint(self.sde, y0, self.ts.to(y0.dtype), method=self.method, dt=self.dt,
                             options={"grad_free": True} if self.method == "milstein" else None)
        return ys[-1].view_as(h0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h0 = self.stem(x).contiguous()
        if self.training or self.sde.sigma == 0.0 or self.eval_samples <= 1:
            return self.head(self._path(h0))
        return torch.stack([self.head(self._path(h0)) for _ in range(self.eval_samples)]).mean(0)

    def debench_stats(self) -> dict[str, float]:
        """Drift and diffusion evaluations since the last call (backprop re-evaluates nothing)."""
        stats = {"nfe_forward": self.sde.nfe_drift, "nfe_diffusion": self.sde.nfe_diffusion}
        self.sde.nfe_drift = self.sde.nfe_diffusion = 0
        return stats

    def extra_eval_metrics(self, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> dict[str, float]:
        """Test accuracy (%) under Gaussian input noise, keys ``acc_perturb_<sigma>``."""
        return robustness_curve(self, x, y, self.perturb_sigmas, batch_size)


@torch.no_grad()
def robustness_curve(model: nn.Module, x: torch.Tensor, y: torch.Tensor, sigmas: Sequence[float],
                     batch_size: int, seed: int = 0) -> dict[str, float]:
    """Accuracy of ``model`` on ``x + sigma * N(0, I)`` for each ``sigma``.

    Args:
        model: a classifier; evaluated in eval mode (and put back in its previous mode).
        x: inputs as the model sees them (normalized), ``N x C x H x W``.
        y: integer labels.
        sigmas: perturbation standard deviations, in units of the normalized input.
        batch_size: examples per forward pass.
        seed: seed of the perturbations, so every model sees the same noise.

    Returns:
        ``{"acc_perturb_<sigma>": accuracy in %}``; ``sigma`` is written with ``:g``.
    """
    was_training = model.training
    model.eval()
    gen = torch.Generator(device=x.device).manual_seed(seed)
    out = {}
    for sigma in sigmas:
        correct = 0
        for i in range(0, len(x), batch_size):
            xb = x[i:i + batch_size]
            noise = torch.randn(xb.shape, generator=gen, device=xb.device, dtype=xb.dtype)
            pred = model(xb + sigma * noise).argmax(1)
            correct += int((pred == y[i:i + batch_size]).sum())
        out[f"acc_perturb_{sigma:g}"] = 100.0 * correct / max(1, len(x))
    model.train(was_training)
    return out


def _register(name: str, image_size: int, width: int, sigma: float, eval_samples: int) -> None:
    @register_model(name, family="stochastic", paper=LIU19,
                    scheme="Euler-Maruyama (fixed dt) through torchsde" if sigma else "forward Euler (fixed dt)",
                    evals_per_forward=None, reference=[], width=width, noise="additive", sigma=sigma, dt=0.1,
                    method="euler", eval_samples=eval_samples)
    def factory(num_classes: int = 10, in_channels: int = 3, image_size: int = image_size, width: int = width,
                noise: str = "additive", sigma: float = sigma, dt: float = 0.1, method: str = "euler",
                eval_samples: int = eval_samples, perturb_sigmas: Sequence[float] = (0.0, 0.1, 0.2, 0.5),
                drift_depth: int = 2) -> nn.Module:
        return NeuralSDEClassifier(num_classes, in_channels, width, image_size, noise, sigma, dt, method,
                                   eval_samples, perturb_sigmas, drift_depth)

    factory.__doc__ = f"Neural SDE classifier, state width {width}, sigma {sigma}."


_register("neural_sde_cifar", 32, 128, 0.1, 10)
_register("neural_sde_mnist", 28, 64, 0.1, 10)
_register("neural_sde_cifar_ode", 32, 128, 0.0, 1)
