"""Latent SDE (Li, Wong, Chen, Duvenaud, AISTATS 2020): a variational SDE model of time series.

Generative model: ``z_0 ~ p(z_0)``, ``dz = h(z, t) dt + g(z, t) dW`` (prior), observations
``x_i ~ p(x | W z_{t_i})``. Approximate posterior: ``q(z_0 | x)`` and
``dz = f(z, t, c_t) dt + g(z, t) dW`` with the same diffusion and a context ``c_t`` that a GRU
computes by reading the series backwards in time. With a shared diagonal diffusion the KL
between the two path measures is ``E int 1/2 |(f - h) / g|^2 dt`` (Girsanov), which torchsde
returns as ``logqp``, so

    ELBO = E_q [ sum_i log p(x_i | z_{t_i}) ] - KL(q(z_0) || p(z_0)) - KL(q(path) || p(path)).

Gradients go through :func:`torchsde.sdeint_adjoint` (the stochastic adjoint of the paper), by
default with the reversible Heun scheme and its exact adjoint (Kidger et al. 2021). The path KL
is annealed linearly from 0 to 1 over ``kl_anneal_iters`` training steps (the step counter is a
buffer, so it survives checkpoints).

Each diffusion coordinate depends only on its own latent coordinate (one tiny MLP per
dimension), which keeps the noise diagonal and the KL formula valid.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn as nn

from debench.nfe import NFECounter
from debench.registry import register_model

LI20 = "Li, Wong, Chen, Duvenaud. Scalable Gradients for Stochastic Differential Equations. AISTATS 2020"
LIKELIHOODS = ("gaussian", "laplace")


def _mlp(i: int, h: int, o: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(i, h), nn.Softplus(), nn.Linear(h, h), nn.Softplus(), nn.Linear(h, o))


class PosteriorPriorSDE(nn.Module):
    """Posterior drift ``f``, prior drift ``h`` and diagonal diffusion ``g`` in torchsde's interface."""

    sde_type = "stratonovich"
    noise_type = "diagonal"

    def __init__(self, latent: int, context: int, hidden: int):
        super().__init__()
        self.f_net = _mlp(latent + context, hidden, latent)
        self.h_net = _mlp(latent, hidden, latent)
        self.g_nets = nn.ModuleList(
            nn.Sequential(nn.Linear(1, hidden), nn.Softplus(), nn.Linear(hidden, 1), nn.Sigmoid())
            for _ in range(latent))
        self.ts: torch.Tensor | None = None
        self.ctx: torch.Tensor | None = None
        self.nfe = NFECounter()  # debench.nfe: the one counter every family uses

    def f(self, t, y):
        self.nfe.tick()
        # Context of the nearest observation time: solver times carry rounding error, and a
        # lookup that flips at the grid points would break the adjoint's path reconstruction.
        n = len(self.ts) - 1
        i = min(max(int(round(float((t - self.ts[0]) / (self.ts[-1] - self.ts[0]) * n))), 0), n)
        return self.f_net(torch.cat([y, self.ctx[i]], 1))

    def h(self, t, y):
        self.nfe.tick()
        return self.h_net(y)

    def g(self, t, y):
        self.nfe.tick()
        return torch.cat([net(y[:, i:i + 1]) for i, net in enumerate(self.g_nets)], 1)


class LatentSDE(nn.Module):
    """Latent SDE for series ``x`` of shape ``N x T x D`` observed at ``linspace(0, t_end, T)``.

    Args:
        data_shape: ``(T, D)`` of one series (passed by the trainer).
        latent_size, context_size, hidden_size: sizes of ``z``, ``c_t`` and the MLPs.
        t_end: time of the last observation.
        substeps: solver steps between consecutive observations (``dt = t_end / (T - 1) / substeps``;
            an integer number of steps per interval keeps the reversible-Heun adjoint exact).
        method, adjoint_method: torchsde schemes (Stratonovich ``reversible_heun`` and its exact
            adjoint by default; ``midpoint``/``adjoint`` is the alternative).
        adjoint: use ``sdeint_adjoint`` (constant memory); ``False`` backpropagates through the solver.
        likelihood: ``gaussian`` or ``laplace`` observation noise with scale ``obs_scale``.
        kl_anneal_iters: training steps over which the path-KL weight goes from 0 to 1.
        plot_samples: prior paths drawn per plotted series in :meth:`write_artifacts`.
    """

    def __init__(self, data_shape=(50, 1), num_classes: int = 0, latent_size: int = 4, context_size: int = 32,
                 hidden_size: int = 64, t_end: float = 1.0, substeps: int = 1, method: str = "reversible_heun",
                 adjoint_method: str = "adjoint_reversible_heun", adjoint: bool = True,
                 likelihood: str = "laplace", obs_scale: float = 0.05, kl_anneal_iters: int = 1000,
                 plot_samples: int = 8):
        super().__init__()
        if likelihood not in LIKELIHOODS:
            raise ValueError(f"model arg 'likelihood' must be one of {LIKELIHOODS}, got {likelihood!r}")
        steps, dim = int(data_shape[0]), int(data_shape[1])
        self.encoder = nn.GRU(dim, hidden_size)
        self.to_context = nn.Linear(hidden_size, context_size)
        self.qz0 = nn.Linear(context_size, 2 * latent_size)
        self.pz0_mean = nn.Parameter(torch.zeros(1, latent_size))
        self.pz0_logstd = nn.Parameter(torch.zeros(1, latent_size))
        self.sde = PosteriorPriorSDE(latent_size, context_size, hidden_size)
        self.project = nn.Linear(latent_size, dim)
        self.register_buffer("ts", torch.linspace(0.0, t_end, steps))
        self.register_buffer("step", torch.zeros((), dtype=torch.long))
        self.dt = t_end / (steps - 1) / max(1, int(substeps))
        self.method, self.adjoint_method, self.adjoint = method, adjoint_method, adjoint
        self.likelihood, self.obs_scale = likelihood, obs_scale
        self.kl_anneal_iters, self.plot_samples = kl_anneal_iters, plot_samples
        self._plot_data: torch.Tensor | None = None

    # ---------------------------------------------------------------- ELBO
    def _log_lik(self, x: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
        s = self.obs_scale
        if self.likelihood == "gaussian":
            return (-0.5 * ((x - mean) / s) ** 2 - math.log(s) - 0.5 * math.log(2 * math.pi)).sum((0, 2))
        return (-(x - mean).abs() / s - math.log(2 * s)).sum((0, 2))

    def elbo_terms(self, x: torch.Tensor, bm=None, adjoint: bool | None = None) -> dict[str, torch.Tensor]:
        """Per-series log-likelihood, KL of ``z_0`` and path KL (each of shape ``N``).

        Args:
            x: ``N x T x D`` series.
            bm: optional torchsde Brownian motion of size ``N x (latent + 1)`` (tests pass one so
                that adjoint and direct gradients see the same path).
            adjoint: overrides the model's ``adjoint`` flag.
        """
        xs = x.transpose(0, 1)  # T x N x D, the layout torchsde uses
        ctx = self.to_context(self.encoder(xs.flip(0))[0]).flip(0)
        self.sde.ts, self.sde.ctx = self.ts.to(x.dtype), ctx
        mean, logstd = self.qz0(ctx[0]).chunk(2, dim=1)
        z0 = mean + logstd.exp() * torch.randn_like(mean)
        self.sde.nfe.begin("forward")
        use_adjoint = self.adjoint if adjoint is None else adjoint
        kwargs = dict(dt=self.dt, logqp=True, bm=bm)
        if use_adjoint:
            params = (ctx,) + tuple(self.sde.parameters())
            import torchsde  # imported where used: training runs where torchsde is absent
            zs, log_ratio = torchsde.sdeint_adjoint(self.sde, z0, self.sde.ts, adjoint_params=params,
                                                   method=self.method, adjoint_method=self.adjoint_method,
                                                   **kwargs)
        else:
            import torchsde  # imported where used: training runs where torchsde is absent
            zs, log_ratio = torchsde.sdeint(self.sde, z0, self.sde.ts, method=self.method, **kwargs)
        self.sde.nfe.begin("backward")  # what is evaluated next is the adjoint solve of loss.backward()
        log_lik = self._log_lik(xs, self.project(zs))
        qz0 = torch.distributions.Normal(mean, logstd.exp())
        pz0 = torch.distributions.Normal(self.pz0_mean, self.pz0_logstd.exp())
        kl_z0 = torch.distributions.kl_divergence(qz0, pz0).sum(1)
        return {"log_lik": log_lik, "kl_z0": kl_z0, "kl_path": log_ratio.sum(0)}

    def kl_weight(self) -> float:
        if self.kl_anneal_iters <= 0:
            return 1.0
        return min(1.0, float(self.step) / self.kl_anneal_iters)

    def training_loss(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Annealed negative ELBO in nats per observed value (per series / ``T D``), batch mean.

        Dividing by ``T D`` only rescales the gradient (the optimum is the same); it keeps SGD
        learning rates in the range used for the classifiers.
        """
        terms = self.elbo_terms(x)
        loss = -(terms["log_lik"] - terms["kl_z0"] - self.kl_weight() * terms["kl_path"]).mean()
        loss = loss / (x.shape[1] * x.shape[2])
        self.step += 1
        return loss

    def evaluate_metrics(self, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> dict[str, float]:
        """Held-out negative ELBO (KL weight 1) per series and per observation, and its parts."""
        sums = {"log_lik": 0.0, "kl_z0": 0.0, "kl_path": 0.0}
        nfe_before = self.sde.nfe.total
        with torch.no_grad():
            for i in range(0, len(x), batch_size):
                terms = self.elbo_terms(x[i:i + batch_size], adjoint=False)
                for k in sums:
                    sums[k] += float(terms[k].sum())
        n = max(1, len(x))
        neg_elbo = -(sums["log_lik"] - sums["kl_z0"] - sums["kl_path"]) / n
        self._plot_data = x[: min(4, len(x))].detach()
        return {"neg_elbo": neg_elbo, "neg_elbo_per_obs": neg_elbo / (x.shape[1] * x.shape[2]),
                "neg_log_lik": -sums["log_lik"] / n, "kl_z0": sums["kl_z0"] / n, "kl_path": sums["kl_path"] / n,
                "nfe_per_batch": (self.sde.nfe.total - nfe_before) / math.ceil(n / batch_size)}

    def debench_stats(self) -> dict[str, float]:
        """``f``/``h``/``g`` evaluations of the forward solves and (the rest) of the adjoint solves."""
        return self.sde.nfe.pop()

    # ---------------------------------------------------------------- sampling and plots
    @torch.no_grad()
    def sample_prior(self, n: int) -> torch.Tensor:
        """``n`` series from the prior SDE, ``n x T x D`` (observation noise not added)."""

        class Prior(nn.Module):
            sde_type, noise_type = self.sde.sde_type, self.sde.noise_type

            def __init__(s, sde):
                super().__init__()
                s.base = sde

            def f(s, t, y):
                return s.base.h(t, y)

            def g(s, t, y):
                return s.base.g(t, y)

        p = self.pz0_mean.expand(n, -1)
        z0 = p + self.pz0_logstd.exp() * torch.randn_like(p)
        import torchsde  # imported where used: training runs where torchsde is absent
        zs = torchsde.sdeint(Prior(self.sde), z0, self.ts, method="midpoint", dt=self.dt)
        return self.project(zs).transpose(0, 1)

    @torch.no_grad()
    def sample_posterior(self, x: torch.Tensor, n: int) -> torch.Tensor:
        """``n`` posterior reconstructions of each series in ``x``: ``n x N x T x D``."""
        out = []
        for _ in range(n):
            xs = x.transpose(0, 1)
            ctx = self.to_context(self.encoder(xs.flip(0))[0]).flip(0)
            self.sde.ts, self.sde.ctx = self.ts.to(x.dtype), ctx
            mean, logstd = self.qz0(ctx[0]).chunk(2, dim=1)
            z0 = mean + logstd.exp() * torch.randn_like(mean)
            import torchsde  # imported where used: training runs where torchsde is absent
            zs = torchsde.sdeint(self.sde, z0, self.sde.ts, method="midpoint", dt=self.dt)
            out.append(self.project(zs).transpose(0, 1))
        return torch.stack(out)

    def write_artifacts(self, folder: Path) -> list[Path]:
        """``latent_sde_paths.png``: test series with posterior and prior sample paths."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        data = self._plot_data
        if data is None:
            return []
        t = self.ts.cpu().numpy()
        post = self.sample_posterior(data, self.plot_samples).cpu().numpy()
        prior = self.sample_prior(self.plot_samples).cpu().numpy()
        data = data.cpu().numpy()
        dims = data.shape[2]
        fig, axes = plt.subplots(dims, 2, figsize=(10, 2.5 * dims), squeeze=False)
        for d in range(dims):
            ax = axes[d, 0]
            for j in range(data.shape[0]):
                color = f"C{j}"
                ax.plot(t, post[:, j, :, d].T, color=color, alpha=0.25, lw=0.8)
                ax.plot(t, data[j, :, d], "o", color=color, ms=2)
            ax.set_title(f"dim {d}: data (dots) and posterior samples")
            ax = axes[d, 1]
            ax.plot(t, prior[:, :, d].T, color="C7", alpha=0.6, lw=0.8)
            for j in range(data.shape[0]):
                ax.plot(t, data[j, :, d], "o", color=f"C{j}", ms=2)
            ax.set_title(f"dim {d}: data and prior samples")
        for ax in axes[-1]:
            ax.set_xlabel("t")
        fig.tight_layout()
        path = folder / "latent_sde_paths.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        return [path]


@register_model("latent_sde", family="stochastic", paper=LI20, task="timeseries", metric="neg_elbo",
                scheme="reversible Heun (Stratonovich) with the stochastic adjoint", evals_per_forward=None,
                reference=[], precision="fp32",
                precision_source="google-research/torchsde@44ed410 examples/latent_sde_lorenz.py: fp32, no autocast",
                latent_size=4, context_size=32, hidden_size=64, substeps=1, kl_anneal_iters=1000)
def latent_sde(data_shape=(50, 1), num_classes: int = 0, **kwargs) -> nn.Module:
    """Latent SDE for the ``ou_paths`` and ``lorenz`` series (no published row in the reference CSV)."""
    return LatentSDE(data_shape, num_classes, **kwargs)
