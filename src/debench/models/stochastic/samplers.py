"""Samplers and likelihoods for score SDEs (Song et al. 2021, Sec. 4 and App. D).

Every function takes the forward SDE (:mod:`diffusion_sdes`) and a score function
``score(x, t) -> grad_x log p_t(x)`` with ``t`` of shape ``(batch,)``, so they can be checked
against the exact score of Gaussian data:

- :func:`euler_maruyama`: the reverse-time SDE ``dx = [f - g^2 score] dt + g dW-bar`` from ``T``
  to ``eps`` (``sde.sample_eps`` unless given: 1e-5 for VE, 1e-3 otherwise), ``steps`` equal
  steps, the last one without noise.
- :func:`predictor_corrector`: one Langevin corrector step with signal-to-noise ratio ``snr``
  (0.16 in the paper) then a predictor step per time; the predictor is reverse Euler-Maruyama
  (upstream's ``euler_maruyama``, the VP/sub-VP continuous configs) or, on the VE SDE, the
  reverse-diffusion predictor (upstream's ``reverse_diffusion``, every VE CIFAR-10 config:
  yang-song/score_sde_pytorch@cb1f359 ``configs/ve/cifar10_ncsnpp_continuous.py``,
  ``sampling.py`` ``ReverseDiffusionPredictor``, ``sde_lib.py`` ``VESDE.discretize``).
- :func:`ancestral`: DDPM's ancestral sampler, the VP SDE's own discretization.
- :func:`probability_flow`: the ODE ``dx/dt = f - g^2 score / 2`` solved by torchdiffeq
  (dopri5, rtol = atol = 1e-5), returning its NFE.
- :func:`log_likelihood`: ``log p_0(x)`` through the same ODE, augmented with the divergence
  (exact or Hutchinson's estimator), plus the prior's log-density at ``t = T``.
"""

from __future__ import annotations

from typing import Callable

import torch

from debench.models.stochastic.diffusion_sdes import DiffusionSDE, VPSDE, bcast
from debench.nfe import NFECounter

Score = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _end(sde: DiffusionSDE, eps: float | None) -> float:
    return sde.sample_eps if eps is None else eps


def _times(sde: DiffusionSDE, steps: int, eps: float, ref: torch.Tensor) -> torch.Tensor:
    return torch.linspace(sde.T, eps, steps, device=ref.device, dtype=ref.dtype)


def _reverse_em_step(sde, score, x, t, h, last):
    tb = t.expand(x.shape[0])
    g = bcast(sde.diffusion(tb), x)
    mean = x - (sde.drift(x, tb) - g * g * score(x, tb)) * h
    return mean if last else mean + g * (h ** 0.5) * torch.randn_like(x)


@torch.no_grad()
def euler_maruyama(sde: DiffusionSDE, score: Score, x: torch.Tensor, steps: int = 1000,
                   eps: float | None = None) -> torch.Tensor:
    """Reverse-SDE Euler-Maruyama from the prior sample ``x`` to ``eps`` (``None``: ``sde.sample_eps``);
    ``steps`` score evaluations."""
    eps = _end(sde, eps)
    ts = _times(sde, steps, eps, x)
    h = (sde.T - eps) / (steps - 1) if steps > 1 else sde.T - eps
    for i, t in enumerate(ts):
        x = _reverse_em_step(sde, score, x, t, h, last=i == steps - 1)
    return x


def langevin_step(sde: DiffusionSDE, score: Score, x: torch.Tensor, t: torch.Tensor, h: float,
                  snr: float) -> tuple[torch.Tensor, torch.Tensor]:
    """One corrector step; returns ``(x, x_mean)``. Step ``2 alpha (snr |z| / |score|)^2``."""
    tb = t.expand(x.shape[0])
    s = score(x, tb)
    z = torch.randn_like(x)
    grad_norm = s.flatten(1).norm(dim=1).mean()
    noise_norm = z.flatten(1).norm(dim=1).mean()
    step = 2 * bcast(sde.langevin_alpha(tb, h), x) * (snr * noise_norm / grad_norm) ** 2
    mean = x + step * s
    return mean + (2 * step).sqrt() * z, mean


PREDICTORS = ("euler_maruyama", "reverse_diffusion")


def ve_reverse_diffusion_step(sde: DiffusionSDE, score: Score, x: torch.Tensor, t: torch.Tensor, n: int,
                              last: bool) -> torch.Tensor:
    """Upstream's reverse-diffusion predictor on the VE SDE (SMLD discretization).

    With ``n`` geometric noise scales ``sigma_j = sigma(j / (n - 1))`` and ``i = floor(t (n - 1) / T)``:
    ``x_mean = x + (sigma_i^2 - sigma_{i-1}^2) score(x, t)`` (``sigma_{-1} = 0``), and
    ``x = x_mean + sqrt(sigma_i^2 - sigma_{i-1}^2) z`` except at the last step (noise removal).
    """
    tb = t.expand(x.shape[0])
    i = (tb * (n - 1) / sde.T).long()
    sig = sde.sigma(i.to(x.dtype) / (n - 1))
    prev = torch.where(i == 0, torch.zeros_like(sig), sde.sigma((i - 1).clamp(min=0).to(x.dtype) / (n - 1)))
    var = bcast(sig * sig - prev * prev, x)
    mean = x + var * score(x, tb)
    return mean if last else mean + var.sqrt() * torch.randn_like(x)


@torch.no_grad()
def predictor_corrector(sde: DiffusionSDE, score: Score, x: torch.Tensor, steps: int = 1000,
                        eps: float | None = None, snr: float = 0.16, corrector_steps: int = 1,
                        predictor: str = "euler_maruyama") -> torch.Tensor:
    """Corrector (Langevin) then predictor per time, down to ``eps`` (``None``: ``sde.sample_eps``);
    ``steps (1 + corrector_steps)`` NFE.

    Args:
        predictor: ``euler_maruyama`` (reverse EM) or ``reverse_diffusion`` (VE SDE only;
            :func:`ve_reverse_diffusion_step` with ``steps`` noise scales).

    Raises:
        ValueError: for an unknown predictor, or ``reverse_diffusion`` on another SDE than VE.
    """
    if predictor not in PREDICTORS:
        raise ValueError(f"model arg 'pc_predictor': must be one of {PREDICTORS}, got {predictor!r}")
    if predictor == "reverse_diffusion" and getattr(sde, "name", "") != "ve":
        raise ValueError("model arg 'pc_predictor': reverse_diffusion is implemented for the VE SDE only")
    eps = _end(sde, eps)
    ts = _times(sde, steps, eps, x)
    h = (sde.T - eps) / (steps - 1) if steps > 1 else sde.T - eps
    for i, t in enumerate(ts):
        for _ in range(corrector_steps):
            x, _ = langevin_step(sde, score, x, t, h, snr)
        if predictor == "reverse_diffusion":
            x = ve_reverse_diffusion_step(sde, score, x, t, steps, last=i == steps - 1)
        else:
            x = _reverse_em_step(sde, score, x, t, h, last=i == steps - 1)
    return x


@torch.no_grad()
def ancestral(sde: VPSDE, score: Score, x: torch.Tensor) -> torch.Tensor:
    """DDPM ancestral sampling over the ``N`` discrete betas of a VP SDE (``N`` score evaluations).

    ``x_{i-1} = (x_i + beta_i score(x_i, t_i)) / sqrt(1 - beta_i) + sqrt(beta_i) z``, the last step
    without noise; ``t_i = i / (N - 1)``.
    """
    betas = sde.discrete_betas().to(x.device, x.dtype)
    n = len(betas)
    for i in reversed(range(n)):
        t = torch.full((x.shape[0],), i / (n - 1), device=x.device, dtype=x.dtype)
        mean = (x + betas[i] * score(x, t)) / (1 - betas[i]).sqrt()
        x = mean + betas[i].sqrt() * torch.randn_like(x) if i > 0 else mean
    return x


class _Counted(torch.nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn, self.counter = fn, NFECounter()

    @property
    def nfe(self) -> int:
        return self.counter.total

    def forward(self, t, state):
        self.counter.tick()
        return self.fn(t, state)


def _stop_at(ts: torch.Tensor, method: str) -> dict | None:
    # Adaptive solvers step past the end and interpolate back; past t = 0 the VP marginal std is
    # NaN, so make the last step land on the end time instead.
    return {"step_t": ts} if method in ("dopri5", "dopri8", "bosh3", "fehlberg2", "adaptive_heun") else None


def ode_velocity(sde: DiffusionSDE, score: Score, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Probability-flow velocity ``f - g^2 score / 2``."""
    tb = t.expand(x.shape[0])
    g = bcast(sde.diffusion(tb), x)
    return sde.drift(x, tb) - 0.5 * g * g * score(x, tb)


def odeint(*args, **kwargs) -> torch.Tensor:
    """torchdiffeq's ``odeint``, imported on first use: it pulls in scipy, which training
    processes that never sample should not pay for."""
    from torchdiffeq import odeint as _odeint

    return _odeint(*args, **kwargs)


@torch.no_grad()
def probability_flow(sde: DiffusionSDE, score: Score, x: torch.Tensor, eps: float | None = None,
                     rtol: float = 1e-5, atol: float = 1e-5, method: str = "dopri5") -> tuple[torch.Tensor, int]:
    """Integrate the probability-flow ODE from ``T`` to ``eps`` (``None``: ``sde.sample_eps``);
    returns ``(samples, nfe)``."""
    eps = _end(sde, eps)
    fn = _Counted(lambda t, y: ode_velocity(sde, score, y, t))
    ts = torch.tensor([sde.T, eps], device=x.device, dtype=x.dtype)
    out = odeint(fn, x, ts, rtol=rtol, atol=atol, method=method, options=_stop_at(ts, method))
    return out[-1], fn.nfe


def log_likelihood(sde: DiffusionSDE, score: Score, x: torch.Tensor, eps: float = 1e-5, rtol: float = 1e-5,
                   atol: float = 1e-5, method: str = "dopri5", trace: str = "hutchinson",
                   probe: str = "rademacher") -> tuple[torch.Tensor, int]:
    """``log p_eps(x)`` per example (nats) by the instantaneous change of variables.

    Args:
        sde, score: the model.
        x: data at ``t = eps`` (in the model's data space).
        eps: start time (1e-5 in Song et al.).
        trace: ``exact`` (one vector-Jacobian product per dimension; for low-dimensional data) or
            ``hutchinson`` (one probe per solve, fixed across time, as in FFJORD).
        probe: ``rademacher`` or ``gaussian`` Hutchinson probes.

    Returns:
        ``(log_prob, nfe)``.
    """
    shape, d = x.shape, x[0].numel()
    noise = None
    if trace == "hutchinson":
        noise = torch.randint(0, 2, shape, device=x.device).to(x.dtype) * 2 - 1 if probe == "rademacher" \
            else torch.randn_like(x)

    def augmented(t, state):
        y = state[:, :d].reshape(shape)
        with torch.enable_grad():
            y = y.detach().requires_grad_(True)
            v = ode_velocity(sde, score, y, t)
            if noise is not None:
                (vjp,) = torch.autograd.grad(v, y, noise)
                div = (vjp * noise).flatten(1).sum(1)
            else:
                div = torch.zeros(shape[0], device=x.device, dtype=x.dtype)
                flat_v = v.flatten(1)
                for i in range(d):
                    (gi,) = torch.autograd.grad(flat_v[:, i].sum(), y, retain_graph=i < d - 1)
                    div = div + gi.flatten(1)[:, i]
        return torch.cat([v.detach().flatten(1), div.detach()[:, None]], 1)

    fn = _Counted(augmented)
    state0 = torch.cat([x.flatten(1), torch.zeros(shape[0], 1, device=x.device, dtype=x.dtype)], 1)
    ts = torch.tensor([eps, sde.T], device=x.device, dtype=x.dtype)
    with torch.no_grad():
        out = odeint(fn, state0, ts, rtol=rtol, atol=atol, method=method, options=_stop_at(ts, method))[-1]
    z, delta = out[:, :d].reshape(shape), out[:, d]
    return sde.prior_logp(z) + delta, fn.nfe
