"""The forward SDEs of score-based generative modeling (Song et al., ICLR 2021), as data.

Each SDE ``dx = f(x, t) dt + g(t) dW`` on ``t in [0, 1]`` has a Gaussian perturbation kernel
``p_t(x_t | x_0) = N(a(t) x_0, s(t)^2 I)``:

- **VE** (NCSN): ``f = 0``, ``g = sigma(t) sqrt(2 log(sigma_max / sigma_min))``,
  ``sigma(t) = sigma_min (sigma_max / sigma_min)^t``; ``a = 1``, ``s = sigma(t)``; prior
  ``N(0, sigma_max^2 I)``.
- **VP** (DDPM): ``f = -beta(t) x / 2``, ``g = sqrt(beta(t))``, ``beta(t) = beta_0 + t (beta_1 - beta_0)``;
  ``a = exp(-B(t) / 2)`` with ``B(t) = int_0^t beta``, ``s^2 = 1 - a^2``; prior ``N(0, I)``.
  DDPM (Ho et al. 2020) is its discretization with ``beta_i = beta(i / (N - 1)) / N``, N = 1000.
- **sub-VP**: the VP drift with ``g^2 = beta(t) (1 - exp(-2 B(t)))``, so ``s = 1 - a^2``.

Each SDE also carries the end time of its samplers, ``sample_eps``: 1e-3 for VP and sub-VP,
1e-5 for VE, as in the authors' code (yang-song/score_sde, ``run_lib.py``: ``sampling_eps``).

Time arguments are tensors of shape ``(batch,)``; returned per-example coefficients have that
shape and broadcast over the data with :func:`bcast`.
"""

from __future__ import annotations

import math

import torch


def bcast(c: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Reshape a per-example coefficient ``(batch,)`` to broadcast over ``x``."""
    return c.reshape(-1, *([1] * (x.dim() - 1)))


class DiffusionSDE:
    """Common interface; subclasses give ``drift_coef``, ``diffusion``, ``marginal``, ``prior_std``."""

    T = 1.0
    name = "base"
    sample_eps = 1e-3

    def drift(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return bcast(self.drift_coef(t), x) * x

    def drift_coef(self, t: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def diffusion(self, t: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def marginal(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(a(t), s(t))``: mean coefficient and standard deviation of ``p_t(x_t | x_0)``."""
        raise NotImplementedError

    prior_std = 1.0

    def prior_sample(self, shape, device=None, dtype=None, generator=None) -> torch.Tensor:
        return self.prior_std * torch.randn(shape, device=device, dtype=dtype, generator=generator)

    def prior_logp(self, z: torch.Tensor) -> torch.Tensor:
        """Log-density of the prior ``N(0, prior_std^2 I)`` per example (nats)."""
        d = z[0].numel()
        s2 = self.prior_std**2
        return -0.5 * d * math.log(2 * math.pi * s2) - z.flatten(1).pow(2).sum(1) / (2 * s2)

    def noise_label(self, t: torch.Tensor) -> torch.Tensor:
        """What the score network is conditioned on (``999 t`` as in DDPM; ``log sigma`` for VE)."""
        return 999.0 * t

    def langevin_alpha(self, t: torch.Tensor, h: float) -> torch.Tensor:
        """``alpha_i`` of the Langevin corrector's step size (Song et al. Alg. 4/5)."""
        return torch.ones_like(t)


class VESDE(DiffusionSDE):
    name = "ve"
    sample_eps = 1e-5

    def __init__(self, sigma_min: float = 0.01, sigma_max: float = 50.0):
        self.sigma_min, self.sigma_max = sigma_min, sigma_max
        self.prior_std = sigma_max
        self._log_ratio = math.log(sigma_max / sigma_min)

    def sigma(self, t):
        return self.sigma_min * torch.exp(t * self._log_ratio)

    def drift_coef(self, t):
        return torch.zeros_like(t)

    def diffusion(self, t):
        return self.sigma(t) * math.sqrt(2 * self._log_ratio)

    def marginal(self, t):
        return torch.ones_like(t), self.sigma(t)

    def noise_label(self, t):
        return torch.log(self.sigma(t))


class VPSDE(DiffusionSDE):
    name = "vp"

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0, n: int = 1000):
        if beta_max / n >= 1:
            raise ValueError(f"VP SDE: n={n} discrete steps give beta_N = beta_max/n >= 1; use n > {beta_max:g}")
        self.beta_0, self.beta_1, self.n = beta_min, beta_max, n

    def beta(self, t):
        return self.beta_0 + t * (self.beta_1 - self.beta_0)

    def integral_beta(self, t):
        return self.beta_0 * t + 0.5 * t * t * (self.beta_1 - self.beta_0)

    def drift_coef(self, t):
        return -0.5 * self.beta(t)

    def diffusion(self, t):
        return self.beta(t).sqrt()

    def marginal(self, t):
        a = torch.exp(-0.5 * self.integral_beta(t))
        return a, (1 - a * a).clamp_min(0).sqrt()

    def langevin_alpha(self, t, h):
        # Song et al. use 1 - beta_i = 1 - beta(t) h; exp(-beta(t) h) agrees to first order and
        # stays positive when a smoke run takes a handful of large steps.
        return torch.exp(-self.beta(t) * h)

    def discrete_betas(self) -> torch.Tensor:
        """DDPM's ``beta_i = beta(i / (N - 1)) / N`` (``1e-4 ... 0.02`` for the defaults)."""
        return torch.linspace(self.beta_0 / self.n, self.beta_1 / self.n, self.n, dtype=torch.float64)

    def discrete_index(self, t: torch.Tensor) -> torch.Tensor:
        """Step ``i`` of DDPM's grid for time ``t``: ``floor(t (N - 1))``, as the authors index
        ``sqrt_1m_alphas_cumprod`` (yang-song/score_sde, ``models/utils.py``, ``get_score_fn``);
        the 1e-4 guards ``t = i / (N - 1)`` that rounds just below ``i`` in floating point."""
        return torch.floor(t * (self.n - 1) + 1e-4).long().clamp(0, self.n - 1)

    def discrete_std(self, t: torch.Tensor) -> torch.Tensor:
        """DDPM's ``sqrt(1 - prod_{j <= i} (1 - beta_j))`` at step ``discrete_index(t)``: the noise
        scale a DDPM network was trained on (0.01 at ``i = 0``, where the continuous ``s(1e-5)`` is 0.001)."""
        std = (1 - torch.cumprod(1 - self.discrete_betas(), 0)).sqrt()
        return std.to(t.device)[self.discrete_index(t)].to(t.dtype)


class SubVPSDE(VPSDE):
    name = "subvp"

    def diffusion(self, t):
        return (self.beta(t) * (1 - torch.exp(-2 * self.integral_beta(t)))).sqrt()

    def marginal(self, t):
        a = torch.exp(-0.5 * self.integral_beta(t))
        return a, 1 - a * a

    def langevin_alpha(self, t, h):
        return torch.ones_like(t)


SDES = {"ve": VESDE, "vp": VPSDE, "subvp": SubVPSDE}


def make_sde(name: str, **kwargs) -> DiffusionSDE:
    """``ve``, ``vp`` or ``subvp`` with keyword overrides of its constants."""
    if name not in SDES:
        raise ValueError(f"model arg 'sde' must be one of {tuple(SDES)}, got {name!r}")
    return SDES[name](**kwargs)
