"""Invertible blocks whose backward pass rebuilds activations from outputs (flat memory in depth).

Every reversible architecture here (RevNet, Chang et al.'s Hamiltonian, midpoint and leapfrog
networks, Momentum ResNets) is a sequence of *shears* of a pair of tensors ``(a, b)``: one of
them is replaced by ``alpha * target + beta * other + c * phi(other)`` while the other is kept,
optionally followed by a swap. A shear is inverted exactly in closed form, so
:class:`ReversibleSequence` stores only the pair at its end; its backward walks the shears in
reverse, evaluating each ``phi`` once with a graph to get both the previous state and the
gradients (one extra forward per block instead of two).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from debench.models.discrete.layers import frozen_bn_stats


class Shear(nn.Module):
    """``target <- alpha * target + beta * other + c * phi(other)``; ``target`` is 0 (a) or 1 (b).

    Args:
        phi: the residual function (``None`` for a purely linear shear).
        target: which element of the pair is replaced.
        alpha: nonzero coefficient of the replaced element (invertibility).
        beta, c: coefficients of the kept element and of ``phi``.
        swap: exchange ``a`` and ``b`` after the update (two-step schemes shift their window).
    """

    def __init__(self, phi: nn.Module | None, target: int, alpha: float = 1.0, beta: float = 0.0,
                 c: float = 1.0, swap: bool = False):
        super().__init__()
        if alpha == 0:
            raise ValueError("alpha must be nonzero for the shear to be invertible")
        self.phi, self.target, self.alpha, self.beta, self.c, self.swap = phi, target, alpha, beta, c, swap

    def _split(self, a, b):
        return (b, a) if self.target == 0 else (a, b)

    def _join(self, src, dst):
        a, b = (dst, src) if self.target == 0 else (src, dst)
        return (b, a) if self.swap else (a, b)

    def _affine(self, dst, src):
        out = dst if self.alpha == 1 else self.alpha * dst
        return out if self.beta == 0 else out + self.beta * src

    def forward(self, a: torch.Tensor, b: torch.Tensor):
        src, dst = self._split(a, b)
        new = self._affine(dst, src)
        if self.phi is not None:
            p = self.phi(src)
            new = new + p if self.c == 1 else new + self.c * p
        return self._join(src, new)

    def inverse(self, a: torch.Tensor, b: torch.Tensor):
        """The input pair that :meth:`forward` maps to ``(a, b)``."""
        if self.swap:
            a, b = b, a
        src, new = self._split(a, b)
        rest = new - self.beta * src if self.beta else new
        if self.phi is not None:
            rest = rest - self.c * self.phi(src)
        dst = rest / self.alpha if self.alpha != 1 else rest
        return (dst, src) if self.target == 0 else (src, dst)

    def reverse(self, a, b, ga, gb):
        """Inputs, input gradients and parameter gradients from outputs and output gradients."""
        if self.swap:
            a, b, ga, gb = b, a, gb, ga
        src, new = self._split(a, b)
        gsrc, gnew = self._split(ga, gb)
        params = [p for p in self.phi.parameters() if p.requires_grad] if self.phi is not None else []
        rest = new - self.beta * src if self.beta else new
        pgrads: tuple = ()
        if self.phi is not None:
            with torch.enable_grad(), frozen_bn_stats(self.phi):
                s = src.detach().requires_grad_()
                p = self.phi(s)
                grads = torch.autograd.grad(p, [s, *params], gnew * self.c, allow_unused=True)
            rest = rest - self.c * p.detach()
            gsrc = gsrc + grads[0] if grads[0] is not None else gsrc
            pgrads = grads[1:]
        if self.beta:
            gsrc = gsrc + self.beta * gnew
        dst = rest / self.alpha if self.alpha != 1 else rest
        gdst = gnew * self.alpha if self.alpha != 1 else gnew
        if self.target == 0:
            return dst, src, gdst, gsrc, list(zip(params, pgrads))
        return src, dst, gsrc, gdst, list(zip(params, pgrads))


class _ReversibleFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, shears, a, b, *params):
        ctx.shears, ctx.params = shears, params
        with torch.no_grad():
            for s in shears:
                a, b = s(a, b)
        ctx.save_for_backward(a, b)
        return a, b

    @staticmethod
    def backward(ctx, ga, gb):
        a, b = ctx.saved_tensors
        ga = torch.zeros_like(a) if ga is None else ga
        gb = torch.zeros_like(b) if gb is None else gb
        acc: dict[int, torch.Tensor] = {}
        for s in reversed(ctx.shears):
            a, b, ga, gb, pg = s.reverse(a, b, ga, gb)
            for p, g in pg:
                if g is not None:
                    acc[id(p)] = acc[id(p)] + g if id(p) in acc else g
        return (None, ga, gb, *(acc.get(id(p)) for p in ctx.params))


class ReversibleSequence(nn.Module):
    """Shears applied in order; with ``invertible`` the backward rebuilds activations.

    Args:
        shears: the update sequence (see the ``*_unit`` builders).
        invertible: store only the final pair and reconstruct (True) or plain autograd (False).
    """

    def __init__(self, shears: list[Shear], invertible: bool = True):
        super().__init__()
        self.shears, self.invertible = nn.ModuleList(shears), invertible

    def forward(self, a: torch.Tensor, b: torch.Tensor):
        if not (self.invertible and torch.is_grad_enabled()):
            for s in self.shears:
                a, b = s(a, b)
            return a, b
        if a.dtype in (torch.float16, torch.bfloat16):  # reconstruction needs float32 arithmetic
            a, b = a.float(), b.float()
        params = [p for p in self.parameters() if p.requires_grad]
        with torch.autocast(a.device.type, enabled=False):
            return _ReversibleFunction.apply(list(self.shears), a, b, *params)

    @torch.no_grad()
    def inverse(self, a: torch.Tensor, b: torch.Tensor):
        """The input pair, rebuilt from the output pair (BN statistics untouched)."""
        for s in reversed(self.shears):
            with frozen_bn_stats(s.phi):
                a, b = s.inverse(a, b)
        return a, b
