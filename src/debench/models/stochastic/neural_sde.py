"""Neural SDE classifier (Liu, Xiao, Si, Cao, Kumar, Hsieh 2019): an ODE-Net with noise injected.

Layout of the authors' ``SdeClassifier`` (xuanqing94/NeuralSDE, ``models/sde_model.py`` at commit
0036314; driver ``sde_classifier.py``, solver ``sdeint/euler.py``):

- stem: one **unpadded** 3x3 conv to 64 channels (CIFAR 32x32 -> 30x30, MNIST 28 -> 26), no
  norm or activation after it;
- one SDE block ``dh = f(h, t) dt + G(h, t) dW`` on ``t in [0, 1]``; the drift ``f`` is
  (GroupNorm-ReLU-ConcatConv) x 3 then GroupNorm, ``ConcatConv`` a 3x3 conv that sees the time
  as one extra constant input channel;
- head: GroupNorm-ReLU, global average pooling, linear.

Diffusion ``G`` (the authors' ``SDEfunc``/``SDEfunc2``/``SDEfunc3``):

- ``multiplicative``: ``G = sigma * h`` (the noise of every sweep in ``run_xde.sh`` but one);
- ``additive``: ``G = sigma``;
- ``dropout``: ``G = sigma * f(h, t)`` (the continuous-time limit of Gaussian dropout on ``f``);

and ``sigma = 0`` is the ODE-Net it regularizes. ``method="euler"`` is the authors' scheme:
``n = int(1 / dt) + 1`` Euler-Maruyama steps of size ``h = 1 / n`` (11 steps of 1/11 for
``dt = 0.1``), the drift seeing the time ``k * h = k / 11`` at step ``k``: ``sdeint_euler`` advances
its time counter by ``tt += h_real`` in every commit after the first (05c2eff advanced it by the
nominal ``h``; ece27b8 and every later commit, 0036314 included, by ``h_real``). ``method="milstein"`` uses
torchsde at step ``dt``. Evaluation draws one noise path, as the authors' ``test_one_epoch`` does
(``sde_classifier.py``: one ``model(x)`` call under ``model.eval()``, whose SDE block still adds
noise); ``eval_samples > 1`` averages the logits of that many paths, a named option of ours that
the paper experiments leave off.
:func:`robustness_curve` reports accuracy under Gaussian input perturbations, the paper's
robustness measure (adversarial attacks are not implemented).

Parameters (CIFAR-10, width 64): stem 1,792 + drift 113,024 + head 778 = 115,594 (MNIST:
114,442); the authors' additive-noise drift also allocates an unused fourth conv and fifth
norm (37,632 weights, 153,226 in all), which is not reproduced. The old debench layout (two
stride-2 convs to 128 channels at 8x8, a 2-conv drift) had 464,906 on CIFAR-10.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from debench.nfe import NFECounter
from debench.registry import register_model

LIU19 = ("Liu, Xiao, Si, Cao, Kumar, Hsieh. Neural SDE: Stabilizing Neural ODE Networks with "
         "Stochastic Noise. arXiv 1906.02355 (2019)")
NOISE_TYPES = ("additive", "multiplicative", "dropout")
METHODS = ("euler", "milstein")
# sigma values the authors' run_xde.sh swept (xuanqing94/NeuralSDE history: commit -> data, noise).
AUTHOR_SIGMA_SWEEPS = {
    ("05c2eff", "cifar10", "multiplicative"): (0.5,),  # the commented command and results/acc_sde_cifar10_0.5.txt
    ("86833f6", "cifar10", "multiplicative"): (1.4, 1.6, 1.8),
    ("f6b505c", "cifar10", "dropout"): (0.5, 0.6, 0.7, 0.8, 0.9),
    ("9664f31", "tiny-imagenet", "dropout"): (0.1, 0.3, 0.5, 0.7, 0.9, 1.1),
    ("0036314", "stl10", "multiplicative"): (0.0, 0.1, 0.2, 0.3, 0.4),
}


def _norm(c: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(32, c), c)


class TimeConv(nn.Conv2d):
    """3x3 conv that sees the time as one extra constant input channel (the authors' ConcatConv2d)."""

    def __init__(self, channels: int):
        super().__init__(channels + 1, channels, 3, 1, 1)

    def forward(self, t: torch.Tensor | float, x: torch.Tensor) -> torch.Tensor:
        tt = torch.ones_like(x[:, :1]) * t
        return super().forward(torch.cat([tt, x], 1))


class ConvDrift(nn.Module):
    """``f(h, t)``: (GN-ReLU-TimeConv) x depth, then GN (depth 3 in the authors' SDEfunc)."""

    def __init__(self, channels: int, depth: int = 3):
        super().__init__()
        self.norms = nn.ModuleList(_norm(channels) for _ in range(depth))
        self.convs = nn.ModuleList(TimeConv(channels) for _ in range(depth))
        self.out_norm = _norm(channels)

    def forward(self, t, h: torch.Tensor) -> torch.Tensor:
        for norm, conv in zip(self.norms, self.convs):
            h = conv(t, F.relu(norm(h)))
        return self.out_norm(h)


class ConvSDE(nn.Module):
    """Drift and diffusion of the conv state, in torchsde's interface (``batch x d`` tensors).

    Counts drift and diffusion evaluations in plain Python integers (no device sync).
    """

    sde_type = "ito"
    noise_type = "diagonal"

    def __init__(self, drift: nn.Module, shape: tuple[int, int, int], noise: str, sigma: float):
        super().__init__()
        if noise not in NOISE_TYPES:
            raise ValueError(f"model arg 'noise' must be one of {NOISE_TYPES}, got {noise!r}")
        if not sigma >= 0:
            raise ValueError(f"model arg 'sigma' must be >= 0, got {sigma!r}")
        self.drift, self.shape, self.noise, self.sigma = drift, shape, noise, float(sigma)
        self.nfe_drift, self.nfe_diffusion = NFECounter(), NFECounter()

    def _f(self, t, y):
        self.nfe_drift.tick()
        return self.drift(t, y.view(-1, *self.shape)).flatten(1)

    def f(self, t, y):
        return self._f(t, y)

    def g(self, t, y):
        self.nfe_diffusion.tick()
        if self.noise == "additive":
            return torch.full_like(y, self.sigma)
        if self.noise == "multiplicative":
            return self.sigma * y
        return self.sigma * self._f(t, y)

    def f_and_g(self, t, y):
        drift = self._f(t, y)
        if self.noise == "dropout":
            self.nfe_diffusion.tick()
            return drift, self.sigma * drift
        return drift, self.g(t, y)


def euler_maruyama(sde: ConvSDE, y0: torch.Tensor, dt: float, t1: float = 1.0) -> torch.Tensor:
    """The authors' ``sdeint_euler``: ``n = int(t1 / dt) + 1`` steps of ``h = t1 / n``, drift time ``k * h``.

    Args:
        sde: drift/diffusion; with ``sigma == 0`` no noise is drawn (the authors' ``odeint_euler``).
        y0: initial state, ``batch x d``.
        dt: nominal step; the real step is ``t1 / (int(t1 / dt) + 1)``.
        t1: final time.

    Returns:
        The state at ``t1``.
    """
    n = int(t1 / dt) + 1
    h = t1 / n
    y = y0
    for k in range(n):
        t = k * h  # the authors' ``tt += h_real``
        if sde.sigma == 0.0:
            y = y + h * sde.f(t, y)
        else:
            drift, diffusion = sde.f_and_g(t, y)
            y = y + h * drift + diffusion * torch.randn_like(y) * math.sqrt(h)
    return y


def authors_head(width: int, num_classes: int) -> nn.Sequential:
    """The authors' classifier head: GN, ReLU, global average pool, linear."""
    return nn.Sequential(_norm(width), nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(width, num_classes))


class NeuralSDEClassifier(nn.Module):
    """The authors' ``SdeClassifier``: unpadded 3x3 stem, one SDE block on ``[0, 1]``, GN-ReLU-pool-linear.

    Args:
        num_classes, in_channels: head and stem sizes.
        width: channels of the SDE state (64 in the authors' code).
        noise: ``multiplicative``, ``additive`` or ``dropout``.
        sigma: noise scale (>= 0); 0 gives the ODE-Net (then only one path is evaluated).
        dt: nominal step (0.1 in the authors' code; see :func:`euler_maruyama`).
        method: ``euler`` (the authors' Euler-Maruyama) or ``milstein`` (torchsde).
        eval_samples: noise paths whose logits are averaged in eval mode (1, the authors'
            single path; more is our ensemble option).
        perturb_sigmas: input-noise strengths (in units of the normalized input) reported by
            :meth:`extra_eval_metrics`.
        drift_depth: conv layers of the drift (3 in the authors' code).

    Raises:
        ValueError: on an unknown ``noise`` or ``method``, or a negative ``sigma``.
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 3, width: int = 64,
                 noise: str = "multiplicative", sigma: float = 0.5, dt: float = 0.1, method: str = "euler",
                 eval_samples: int = 1, perturb_sigmas: Sequence[float] = (0.0, 0.1, 0.2, 0.5),
                 drift_depth: int = 3):
        super().__init__()
        if method not in METHODS:
            raise ValueError(f"model arg 'method' must be one of {METHODS}, got {method!r}")
        self.stem = nn.Conv2d(in_channels, width, 3, 1)
        self.sde = ConvSDE(ConvDrift(width, drift_depth), (width, 0, 0), noise, sigma)
        self.head = authors_head(width, num_classes)
        self.dt, self.method, self.eval_samples = dt, method, int(eval_samples)
        self.perturb_sigmas = tuple(float(s) for s in perturb_sigmas)
        self.register_buffer("ts", torch.tensor([0.0, 1.0]))

    def _path(self, h0: torch.Tensor) -> torch.Tensor:
        self.sde.shape = tuple(h0.shape[1:])  # the grid follows the input size (30x30 on CIFAR)
        y0 = h0.flatten(1)
        if self.method == "euler" or self.sde.sigma == 0.0:
            return euler_maruyama(self.sde, y0, self.dt).view_as(h0)
        import torchsde  # imported where used: training runs where torchsde is absent
        ys = torchsde.sdeint(self.sde, y0, self.ts.to(y0.dtype), method=self.method, dt=self.dt,
                             options={"grad_free": True})
        return ys[-1].view_as(h0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h0 = self.stem(x).contiguous()
        if self.training or self.sde.sigma == 0.0 or self.eval_samples <= 1:
            return self.head(self._path(h0))
        return torch.stack([self.head(self._path(h0)) for _ in range(self.eval_samples)]).mean(0)

    def debench_stats(self) -> dict[str, float]:
        """Drift and diffusion evaluations since the last call (backprop re-evaluates nothing)."""
        return {**self.sde.nfe_drift.pop(), "nfe_diffusion": self.sde.nfe_diffusion.pop()["nfe_forward"]}

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


# Issue 27, point 3: the authors train in fp32, so amp: auto keeps fp32 for this family.
NEURAL_SDE_FP32 = ("xuanqing94/NeuralSDE@0036314 sde_classifier.py: fp32 training and test_one_epoch, "
                   "no autocast")


def _register(name: str, noise: str, sigma: float, eval_samples: int, doc: str) -> None:
    @register_model(name, family="stochastic", paper=LIU19,
                    scheme="Euler-Maruyama (fixed dt)" if sigma else "forward Euler (fixed dt)",
                    evals_per_forward=None, reference=[], precision="fp32", precision_source=NEURAL_SDE_FP32,
                    width=64, noise=noise, sigma=sigma, dt=0.1,
                    method="euler", eval_samples=eval_samples)
    def factory(num_classes: int = 10, in_channels: int = 3, width: int = 64, noise: str = noise,
                sigma: float = sigma, dt: float = 0.1, method: str = "euler", eval_samples: int = eval_samples,
                perturb_sigmas: Sequence[float] = (0.0, 0.1, 0.2, 0.5), drift_depth: int = 3) -> nn.Module:
        return NeuralSDEClassifier(num_classes, in_channels, width, noise, sigma, dt, method, eval_samples,
                                   perturb_sigmas, drift_depth)

    factory.__doc__ = f"The authors' SdeClassifier, {noise} noise, sigma {sigma}: {doc}."


# sigma 0.5 multiplicative: the CIFAR-10 command kept at the top of every run_xde.sh version.
# eval_samples 1: the authors' test_one_epoch evaluates one noise path
_register("neural_sde_cifar", "multiplicative", 0.5, 1, "run_xde.sh's CIFAR-10 command")
_register("neural_sde_mnist", "multiplicative", 0.5, 1, "the CIFAR-10 setting (no MNIST script was published)")
_register("neural_sde_cifar_dropout", "dropout", 0.5, 1, "the first value of the authors' CIFAR-10 dropout sweep")
_register("neural_sde_cifar_ode", "multiplicative", 0.0, 1, "sigma 0, the ODE-Net")
