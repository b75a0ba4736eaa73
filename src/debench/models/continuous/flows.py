"""FFJORD (Grathwohl et al. ICLR 2019) and RNODE (Finlay et al. ICML 2020) density models.

``ffjord_toy`` / ``rnode_toy``: one CNF on 2-D points, a ConcatSquash MLP 64-64-64 with tanh,
T = 0.5, exact trace by default; metric ``nll`` (nats per point).

``ffjord_mnist`` / ``rnode_mnist``: FFJORD's multiscale image flow. A logit transform
(alpha = 1e-6), then per scale ``n_blocks`` CNFs, a squeeze, ``n_blocks`` CNFs and half the
channels factored out to the prior; the last scale has no squeeze. Each CNF's field is
ConcatConv2d 3x3 layers ``hidden = (64, 64, 64)`` with softplus; Hutchinson trace with Rademacher
noise; T = 1. Metric ``bits_per_dim`` of uniformly dequantized 8-bit images.

RNODE is FFJORD plus the kinetic-energy and Jacobian-norm penalties (weights 0.01 on
``0.5 * int |f|^2 / D`` and ``int |eps^T df/dz|^2 / D``), trained on a fixed rk4 grid of step 0.25
and evaluated with dopri5 at rtol = atol = 1e-5, the last layer of each field zero-initialised
(``zero_last``, the authors' default ``--zero_last True``) and, for MNIST, the logit transform at
``alpha = 1e-5`` (cfinlay/ffjord-rnode ``example-scripts/mnist.sh``, ``train.py``). The 1000-step
linear learning-rate warm-up of ``train.py`` (and FFJORD's ``train_cnf.py``) is a protocol
setting (``warmup_iterations: 1000`` in ``config/config.yaml``).

Shrinking for smoke runs: ``hidden=(8,)``, ``n_scales=1``, ``n_blocks=1``, ``method=rk4``,
``step_size=0.5`` (and ``eval_method=rk4``, ``eval_step_size=0.5``).
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn as nn

from debench.models.continuous.blocks import ContinuousModel, split_options
from debench.models.continuous.cnf import CNF, ConvField, MLPField, Squeeze, standard_normal_logprob
from debench.models.continuous.solver import SolverConfig, collect_stats
from debench.registry import register_model

GRATHWOHL19 = "Grathwohl, Chen, Bettencourt, Sutskever, Duvenaud. FFJORD. ICLR 2019"
FINLAY20 = "Finlay, Jacobsen, Nurbekyan, Oberman. How to train your neural ODE. ICML 2020"
EVAL_KEYS = ("eval_method", "eval_rtol", "eval_atol", "eval_step_size")


def _configs(options: dict, time_length: float) -> tuple[SolverConfig, SolverConfig, dict]:
    """Training and evaluation solver configs (``eval_*`` keys override the training ones)."""
    evals = {k[5:]: options.pop(k) for k in EVAL_KEYS if options.get(k) is not None}
    for k in EVAL_KEYS:
        options.pop(k, None)
    train, reg = split_options(options)
    train = replace(train, t1=time_length)
    evaluate = replace(train, **evals, adjoint=False, seminorm=False)
    return train, evaluate, reg


class _DensityModel(ContinuousModel):
    """Shared evaluation loop; subclasses define ``log_prob`` and ``metric``."""

    metric = "nll"

    def per_example_metric(self, x: torch.Tensor) -> torch.Tensor:
        return -self.log_prob(x)

    def training_loss(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Mean negative log-likelihood (nats) or bits per dimension of one batch."""
        return self.per_example_metric(x).mean()

    def evaluate_metrics(self, x: torch.Tensor, y: torch.Tensor | None, batch_size: int) -> dict[str, float]:
        """The metric over the whole split and the forward NFE per batch (summed over CNFs).

        Runs under the caller's ``no_grad``: the vector field re-enables gradients locally for
        the trace, so no graph outlives a solver step.
        """
        before = collect_stats(self, reset=False)["nfe_forward"]
        total, batches = 0.0, 0
        for i in range(0, len(x), batch_size):
            total += float(self.per_example_metric(x[i: i + batch_size]).detach().sum())
            batches += 1
        nfe = (collect_stats(self, reset=False)["nfe_forward"] - before) / max(batches, 1)
        return {self.metric: total / len(x), "nfe": nfe}


class ToyFlow(_DensityModel):
    """CNFs on points in R^d with a standard normal prior."""

    metric = "nll"

    def __init__(self, cnfs: list[CNF], dim: int):
        super().__init__()
        self.cnfs, self.dim = nn.ModuleList(cnfs), dim

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        z, l = x, x.new_zeros(x.shape[0])
        for cnf in self.cnfs:
            z, l = cnf(z, l)
        return standard_normal_logprob(z) - l

    @torch.no_grad()
    def sample(self, n: int) -> torch.Tensor:
        z = torch.randn(n, self.dim, device=next(self.parameters()).device)
        for cnf in reversed(self.cnfs):
            z = cnf.inverse(z)
        return z

    def write_artifacts(self, folder: Path) -> list[Path]:
        """``density.png``: the learned density on [-4, 4]^2 next to 2000 samples."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        self.eval()
        device = next(self.parameters()).device
        side = torch.linspace(-4, 4, 100, device=device)
        grid = torch.stack(torch.meshgrid(side, side, indexing="xy"), -1).reshape(-1, 2)
        with torch.no_grad():
            dens = torch.cat([self.log_prob(g) for g in grid.split(2500)]).exp().reshape(100, 100)
        samples = self.sample(2000).cpu()
        fig, axes = plt.subplots(1, 2, figsize=(8, 4))
        axes[0].imshow(dens.cpu().numpy(), origin="lower", extent=(-4, 4, -4, 4), cmap="viridis")
        axes[0].set_title("density")
        axes[1].scatter(samples[:, 0], samples[:, 1], s=1)
        axes[1].set(xlim=(-4, 4), ylim=(-4, 4), title="samples")
        path = Path(folder) / "density.png"
        fig.savefig(path, dpi=100, bbox_inches="tight")
        plt.close(fig)
        return [path]


class MultiscaleFlow(_DensityModel):
    """FFJORD's multiscale image flow with a logit transform; ``bits_per_dim`` of 8-bit images.

    Args:
        make_cnf: ``make_cnf(channels) -> CNF``.
        in_channels, image_size: image shape.
        n_scales: scales (each but the last ends with squeeze + factor-out of half the channels).
        n_blocks: CNFs before and after each squeeze.
        alpha: logit transform y = logit(alpha + (1 - 2 alpha) x).
    """

    metric = "bits_per_dim"

    def __init__(self, make_cnf, in_channels: int, image_size: int, n_scales: int, n_blocks: int, alpha: float):
        super().__init__()
        self.alpha, self.shape = alpha, (in_channels, image_size, image_size)
        scales, self.factored_shapes = [], []
        c, h = in_channels, image_size
        for i in range(n_scales):
            layers = [make_cnf(c) for _ in range(n_blocks)]
            if i < n_scales - 1:
                if h % 2:
                    raise ValueError(f"cannot squeeze a {h}x{h} image: use fewer scales than {n_scales}")
                c, h = 4 * c, h // 2
                layers += [Squeeze()] + [make_cnf(c) for _ in range(n_blocks)]
                self.factored_shapes.append((c - c // 2, h, h))
                c = c // 2
            scales.append(nn.ModuleList(layers))
        self.scales, self.final_shape = nn.ModuleList(scales), (c, h, h)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log density of ``x`` in [0, 1]^D (nats, per image)."""
        s = self.alpha + (1 - 2 * self.alpha) * x
        y = torch.log(s) - torch.log1p(-s)
        logdet = (math.log(1 - 2 * self.alpha) - torch.log(s) - torch.log1p(-s)).flatten(1).sum(1)
        l, logpz = -logdet, 0.0
        for i, scale in enumerate(self.scales):
            for layer in scale:
                y, l = layer(y, l)
            if i < len(self.scales) - 1:
                half = y.shape[1] // 2
                logpz = logpz + standard_normal_logprob(y[:, half:])
                y = y[:, :half]
        return logpz + standard_normal_logprob(y) - l

    def per_example_metric(self, x: torch.Tensor) -> torch.Tensor:
        """Bits per dimension after uniform dequantization of ``x`` in [0, 1] (8-bit levels)."""
        x = x.float().contiguous()
        x = (torch.round(x * 255) + torch.rand_like(x)) / 256
        dims = x[0].numel()
        return -(self.log_prob(x) - dims * math.log(256)) / (dims * math.log(2))

    @torch.no_grad()
    def sample(self, n: int) -> torch.Tensor:
        device = next(self.parameters()).device
        y = torch.randn(n, *self.final_shape, device=device)
        for i in reversed(range(len(self.scales))):
            if i < len(self.scales) - 1:
                y = torch.cat([y, torch.randn(n, *self.factored_shapes[i], device=device)], 1)
            for layer in reversed(self.scales[i]):
                y = layer.inverse(y)
        return ((torch.sigmoid(y) - self.alpha) / (1 - 2 * self.alpha)).clamp(0, 1)

    def write_artifacts(self, folder: Path) -> list[Path]:
        """``samples.png``: an 8x8 grid of samples."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        self.eval()
        x = self.sample(64).cpu()
        c, h, w = self.shape
        grid = x.reshape(8, 8, c, h, w).permute(0, 3, 1, 4, 2).reshape(8 * h, 8 * w, c).numpy()
        fig = plt.figure(figsize=(6, 6))
        plt.imshow(grid.squeeze(-1) if c == 1 else grid, cmap="gray" if c == 1 else None)
        plt.axis("off")
        path = Path(folder) / "samples.png"
        fig.savefig(path, dpi=100, bbox_inches="tight")
        plt.close(fig)
        return [path]


def default_scales(image_size: int) -> int:
    """FFJORD's number of scales: halve the side while it is at least 4 (28 -> 3, 32 -> 4)."""
    n = 0
    while image_size >= 4:
        n, image_size = n + 1, image_size // 2
    return n


def _toy(data_shape, hidden, time_length, divergence, options, zero_last=False) -> ToyFlow:
    train, evaluate, reg = _configs(options, time_length)
    dim = int(torch.Size(data_shape).numel())
    reg.setdefault("noise", "gaussian")
    cnf = CNF(MLPField(dim, tuple(hidden), zero_last), train, evaluate, divergence=divergence, **reg)
    return ToyFlow([cnf], dim)


def _image(in_channels, image_size, hidden, n_scales, n_blocks, alpha, time_length, options,
           zero_last=False) -> MultiscaleFlow:
    train, evaluate, reg = _configs(options, time_length)
    reg.setdefault("noise", "rademacher")
    hidden = tuple(hidden)
    return MultiscaleFlow(lambda c: CNF(ConvField(c, hidden, zero_last), train, evaluate, "hutchinson", **reg),
                          in_channels, image_size, n_scales or default_scales(image_size), n_blocks, alpha)


_TOY = dict(family="continuous", task="density", metric="nll")
_IMG = dict(family="continuous", task="density", metric="bits_per_dim")


@register_model("ffjord_toy", paper=GRATHWOHL19, scheme="CNF, adaptive dopri5, exact trace", **_TOY,
                method="dopri5", rtol=1e-5, atol=1e-5, divergence="exact")
def ffjord_toy(data_shape=(2,), num_classes: int = 0, hidden=(64, 64, 64), time_length: float = 0.5,
               divergence: str = "exact", **options) -> nn.Module:
    """FFJORD on 2-D points; ``divergence="hutchinson"`` with ``noise`` rademacher/gaussian."""
    return _toy(data_shape, hidden, time_length, divergence, options)


@register_model("rnode_toy", paper=FINLAY20, scheme="CNF + kinetic/Jacobian penalties, rk4 train, dopri5 eval",
                **_TOY, method="rk4", step_size=0.25, kinetic_energy=0.01, jacobian_norm=0.01,
                eval_method="dopri5", eval_rtol=1e-5, eval_atol=1e-5, divergence="exact", zero_last=True)
def rnode_toy(data_shape=(2,), num_classes: int = 0, hidden=(64, 64, 64), time_length: float = 1.0,
              divergence: str = "exact", zero_last: bool = True, **options) -> nn.Module:
    """RNODE on 2-D points (``kinetic_energy``, ``jacobian_norm`` weights; ``eval_*`` solver)."""
    return _toy(data_shape, hidden, time_length, divergence, options, zero_last)


@register_model("ffjord_mnist", paper=GRATHWOHL19, scheme="multiscale CNF, dopri5 + adjoint, Hutchinson", **_IMG,
                reference=[{"table_id": "GRATH19_PWC", "model": "FFJORD"}],
                method="dopri5", rtol=1e-5, atol=1e-5, adjoint=True)
def ffjord_mnist(in_channels: int = 1, image_size: int = 28, num_classes: int = 10, hidden=(64, 64, 64),
                 n_scales: int | None = None, n_blocks: int = 2, alpha: float = 1e-6, time_length: float = 1.0,
                 **options) -> nn.Module:
    """FFJORD's multiscale MNIST flow (works for CIFAR shapes too; use alpha=0.05 there)."""
    return _image(in_channels, image_size, hidden, n_scales, n_blocks, alpha, time_length, options)


@register_model("rnode_mnist", paper=FINLAY20, scheme="multiscale CNF + penalties, rk4 train, dopri5 eval", **_IMG,
                reference=[{"table_id": "FINLAY20_PWC", "model": "RNODE"}],
                method="rk4", step_size=0.25, adjoint=True, kinetic_energy=0.01, jacobian_norm=0.01,
                eval_method="dopri5", eval_rtol=1e-5, eval_atol=1e-5, alpha=1e-5, zero_last=True)
def rnode_mnist(in_channels: int = 1, image_size: int = 28, num_classes: int = 10, hidden=(64, 64, 64),
                n_scales: int | None = None, n_blocks: int = 2, alpha: float = 1e-5, time_length: float = 1.0,
                zero_last: bool = True, **options) -> nn.Module:
    """RNODE on FFJORD's multiscale flow (``alpha`` 1e-5 and zero-initialised last layers: mnist.sh)."""
    return _image(in_channels, image_size, hidden, n_scales, n_blocks, alpha, time_length, options, zero_last)
