"""Vector fields with bookkeeping: log-density (CNF) and RNODE regularizer integrands.

:class:`AugmentedField` wraps a network ``f(t, z)`` and integrates extra per-example scalars
along with the state, in the order ``(z, [logp], [kinetic, jacobian])``:

* ``logp``: d logp/dt = -tr(df/dz) (instantaneous change of variables, Chen et al. 2018), by
  the exact trace (one autograd pass per dimension: small states only) or Hutchinson's
  estimator eps^T (df/dz) eps (Grathwohl et al. 2019) with Rademacher or Gaussian eps.
* ``kinetic``: ||f||^2 / D and ``jacobian``: ||eps^T df/dz||^2 / D, the RNODE integrands of
  Finlay et al. 2020 (D = state dimension; the normalization is ours and keeps the weights
  comparable across image sizes).

The noise eps is drawn once per solve, at the first evaluation after :meth:`new_solve`, and
kept until the next solve, so the adjoint's backward solve sees the same estimator as the
forward solve.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

DIVERGENCES = ("exact", "hutchinson")
NOISES = ("rademacher", "gaussian")


class AugmentedField(nn.Module):
    """``f`` plus the integrands of the log-density and of the RNODE regularizers.

    Args:
        f: the network, called ``f(t, z)`` with ``z`` of any shape ``(B, ...)``.
        divergence: ``exact`` or ``hutchinson``, used while ``track_logp`` is set.
        noise: ``rademacher`` or ``gaussian`` Hutchinson noise.

    Attributes set by the owner before each solve: ``track_logp``, ``track_reg``.
    """

    def __init__(self, f: nn.Module, divergence: str = "hutchinson", noise: str = "rademacher"):
        super().__init__()
        if divergence not in DIVERGENCES:
            raise ValueError(f"divergence must be one of {DIVERGENCES}, got {divergence!r}")
        if noise not in NOISES:
            raise ValueError(f"noise must be one of {NOISES}, got {noise!r}")
        self.f, self.divergence, self.noise_kind = f, divergence, noise
        self.track_logp = self.track_reg = False
        self.noise: torch.Tensor | None = None

    def new_solve(self, track_logp: bool = False, track_reg: bool = False) -> None:
        """Choose the state layout of the next solve and forget the previous noise."""
        self.track_logp, self.track_reg, self.noise = track_logp, track_reg, None

    def _eps(self, z: torch.Tensor) -> torch.Tensor:
        if self.noise is None or self.noise.shape != z.shape:
            if self.noise_kind == "gaussian":
                self.noise = torch.randn_like(z)
            else:
                self.noise = torch.randint_like(z, 0, 2) * 2 - 1
        return self.noise

    def forward(self, t: torch.Tensor, state: Any) -> Any:
        if not (self.track_logp or self.track_reg):
            return self.f(t, state)
        z = state[0]
        if not (torch.is_grad_enabled() and z.requires_grad):
            # no graph to extend (evaluation, or the adjoint's forward solve): a fresh leaf
            z = z.detach().requires_grad_(True)
        with torch.enable_grad():
            dz = self.f(t, z)
            out = [dz]
            need_vjp = self.track_reg or self.divergence == "hutchinson"
            if need_vjp:
                eps = self._eps(z)
                vjp = torch.autograd.grad(dz, z, eps, create_graph=True)[0]
            if self.track_logp:
                trace = (vjp * eps).flatten(1).sum(1) if self.divergence == "hutchinson" else exact_trace(dz, z)
                out.append(-trace)
            if self.track_reg:
                dim = dz[0].numel()
                out.append(dz.flatten(1).pow(2).sum(1) / dim)
                out.append(vjp.flatten(1).pow(2).sum(1) / dim)
        return tuple(out)


def exact_trace(dz: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """tr(d dz / dz) per example, one autograd pass per dimension (``dz`` computed from ``z``)."""
    flat = dz.flatten(1)
    trace = torch.zeros(flat.shape[0], dtype=dz.dtype, device=dz.device)
    for i in range(flat.shape[1]):
        trace = trace + torch.autograd.grad(flat[:, i].sum(), z, create_graph=True)[0].flatten(1)[:, i]
    return trace
