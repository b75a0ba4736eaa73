"""One place where every continuous model calls torchdiffeq: solver options, NFE counters, step cap.

A continuous model wraps its vector field in :class:`CountedDynamics` and integrates it with
:func:`solve`. The wrapper counts every function evaluation and attributes it to the pass that
made it:

* ``nfe_forward``: evaluations made while the forward solve runs (the initial-step probe of an
  adaptive solver and rejected steps included);
* ``nfe_backward``: evaluations made during ``loss.backward()``, i.e. by the adjoint solve. Without
  the adjoint, autograd back-propagates through the graph the forward solve stored and calls the
  vector field zero times, so ``nfe_backward`` is 0 by definition.

The pass is told apart by an identity autograd node put on the solve's output: its backward runs
just before the adjoint solve and flips the wrapper into the backward phase; the next forward
solve flips it back.

The step cap ``max_num_steps`` is enforced twice, so that it holds whatever torchdiffeq does:
torchdiffeq's own option (an ``assert``, which ``python -O`` strips), and an evaluation guard in
the wrapper that raises :class:`debench.errors.SolverFailed` once one solve has made more
evaluations than ``max_num_steps`` steps of the method could make. Both also hold in the adjoint
solve; torchdiffeq's assertion and underflow errors in the forward solve are converted to
:class:`SolverFailed`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import torch
import torch.nn as nn

from debench.errors import SolverFailed
from debench.nfe import NFECounter

FIXED_STEP = {"euler": 1, "midpoint": 2, "heun3": 3, "rk4": 4, "explicit_adams": 1, "implicit_adams": 5, "fixed_adams": 5}
"""Function evaluations per step of torchdiffeq's fixed-grid methods (an upper bound for the
implicit Adams methods, whose corrector iterates at most 4 times)."""

ADAPTIVE = {"dopri5": 6, "bosh3": 3, "fehlberg2": 3, "adaptive_heun": 2, "dopri8": 13, "tsit5": 6}
"""Stages (evaluations per attempted step, an upper bound) of torchdiffeq's adaptive methods."""

_FAILURE_MESSAGES = ("max_num_steps", "underflow in dt", "non-finite values")


@dataclass
class SolverConfig:
    """How to integrate a continuous block over ``[0, t1]``.

    Attributes:
        method: any torchdiffeq method (``dopri5``, ``bosh3``, ``rk4``, ``midpoint``, ``euler``...).
        rtol, atol: tolerances of adaptive methods (ignored by fixed-grid ones).
        step_size: step of fixed-grid methods; the grid is ``round(t1 / step_size)`` equal steps
            ending exactly at ``t1`` (so 0.25 over [0, 1] is exactly 4 steps). ``None`` with a
            fixed-grid method means one step.
        adjoint: gradients by the adjoint method (memory O(1) in the steps) instead of
            back-propagating through the solver's operations.
        seminorm: adjoint only; measure the adjoint's error on the state and the adjoint state,
            not on the parameter gradients (Kidger et al. 2021), ``adjoint_options=dict(norm="seminorm")``.
            ``None`` (the default) turns it on wherever it is valid and can matter: an adjoint solve
            with an adaptive method. The parameter-gradient integrals never feed back into the
            state or the adjoint state, so leaving them out of the step-size control does not
            change how accurately those two are solved; a fixed grid has no error control to relax.
        max_num_steps: step cap per solve; ``None`` for none. Passing it raises
            :class:`debench.errors.SolverFailed`.
        t1: end time.
    """

    method: str = "dopri5"
    rtol: float = 1e-3
    atol: float = 1e-3
    step_size: float | None = None
    adjoint: bool = False
    seminorm: bool | None = None
    max_num_steps: int | None = None
    t1: float = 1.0

    def __post_init__(self) -> None:
        if self.method not in FIXED_STEP and self.method not in ADAPTIVE:
            raise ValueError(f"unknown ODE method {self.method!r}; use one of {sorted({**FIXED_STEP, **ADAPTIVE})}")
        if self.seminorm is None:
            self.seminorm = self.adjoint and self.method in ADAPTIVE
        if self.seminorm and not self.adjoint:
            raise ValueError("seminorm=True needs adjoint=True (it is an option of the adjoint solve)")
        if self.step_size is not None and self.step_size <= 0:
            raise ValueError(f"step_size must be positive, got {self.step_size}")

    @classmethod
    def from_kwargs(cls, kwargs: dict[str, Any]) -> "SolverConfig":
        """Pop the solver's keys out of a factory's ``kwargs`` and build the config."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: kwargs.pop(k) for k in list(kwargs) if k in names})

    @property
    def fixed_grid(self) -> bool:
        return self.method in FIXED_STEP

    @property
    def num_steps(self) -> int | None:
        """Steps of a fixed-grid method, ``None`` for an adaptive one."""
        if not self.fixed_grid:
            return None
        return 1 if self.step_size is None else max(1, round(self.t1 / self.step_size))

    def evaluation_cap(self) -> int | None:
        """Most evaluations ``max_num_steps`` steps can make (2 more for the initial-step probe)."""
        if self.max_num_steps is None:
            return None
        return self.max_num_steps * FIXED_STEP.get(self.method, ADAPTIVE.get(self.method, 13)) + 2


class CountedDynamics(nn.Module):
    """Wraps a vector field ``f(t, y)`` and counts its evaluations per pass.

    Args:
        f: the vector field, an ``nn.Module`` called as ``f(t, y)``.
        config: the solver config, whose step cap the guard enforces.
    """

    def __init__(self, f: nn.Module, config: SolverConfig):
        super().__init__()
        self.f, self.config = f, config
        self.nfe = NFECounter()  # debench.nfe: the one counter every family uses

    def forward(self, t: torch.Tensor, y: Any) -> Any:
        self.nfe.tick()
        cap = self.config.evaluation_cap()
        if cap is not None and self.nfe.solve > cap:
            raise SolverFailed(
                f"{self.config.method} passed max_num_steps={self.config.max_num_steps} in the {self.nfe.phase} "
                f"solve ({self.nfe.solve} function evaluations; rtol={self.config.rtol}, atol={self.config.atol})"
            )
        return self.f(t, y)

    def pop_counts(self, reset: bool = True) -> dict[str, int]:
        """The counters since the last reset; zero them unless ``reset`` is False."""
        return self.nfe.pop(reset)


class _EnterBackward(torch.autograd.Function):
    """Identity whose backward marks the start of the backward (adjoint) pass of one solve."""

    @staticmethod
    def forward(ctx, dyn: CountedDynamics, *ys: torch.Tensor):
        ctx.dyn = dyn
        return tuple(y.view_as(y) for y in ys)

    @staticmethod
    def backward(ctx, *grads: torch.Tensor):
        ctx.dyn.nfe.begin("backward")
        return (None, *grads)


def solve(dyn: CountedDynamics, y0: Any, t: torch.Tensor | None = None) -> Any:
    """Integrate ``dyn`` from ``t[0]`` to ``t[-1]`` and return the state at the last time.

    Args:
        dyn: the counted vector field; its ``config`` picks method, tolerances and gradients.
        y0: initial state, a tensor or a tuple of tensors (e.g. ``(z, logp)``).
        t: times, default ``[0, config.t1]`` in ``y0``'s dtype and device.

    Returns:
        The state at ``t[-1]``, same structure as ``y0``.

    Raises:
        SolverFailed: when the solve passes ``max_num_steps`` or the step size underflows.
    """
    from torchdiffeq import odeint, odeint_adjoint  # here, not at import: it pulls in scipy (~0.3 s per process)

    cfg = dyn.config
    first = y0[0] if isinstance(y0, tuple) else y0
    if t is None:
        t = torch.tensor([0.0, cfg.t1], dtype=first.dtype, device=first.device)
    options: dict[str, Any] = {}
    if cfg.fixed_grid:
        n = cfg.num_steps
        if cfg.max_num_steps is not None and n > cfg.max_num_steps:
            raise SolverFailed(f"{cfg.method} with step_size={cfg.step_size} needs {n} steps > max_num_steps={cfg.max_num_steps}")
        options["grid_constructor"] = lambda func, y, tt: _uniform_grid(tt, n)
    elif cfg.max_num_steps is not None:
        options["max_num_steps"] = cfg.max_num_steps
    dyn.nfe.begin("forward")
    kwargs = dict(rtol=cfg.rtol, atol=cfg.atol, method=cfg.method, options=options)
    try:
        if cfg.adjoint:
            adj_options = {k: v for k, v in options.items()}
            if cfg.seminorm:
                adj_options["norm"] = "seminorm"
            out = odeint_adjoint(dyn, y0, t, adjoint_options=adj_options, **kwargs)
        else:
            out = odeint(dyn, y0, t, **kwargs)
    except (AssertionError, RuntimeError) as exc:
        if isinstance(exc, AssertionError) or any(m in str(exc) for m in _FAILURE_MESSAGES):
            raise SolverFailed(f"{cfg.method} (rtol={cfg.rtol}, atol={cfg.atol}) failed: {exc}") from exc
        raise
    last = tuple(o[-1] for o in out) if isinstance(out, tuple) else out[-1]
    ys = last if isinstance(last, tuple) else (last,)
    if torch.is_grad_enabled() and any(y.requires_grad for y in ys):
        ys = _EnterBackward.apply(dyn, *ys)
    return tuple(ys) if isinstance(last, tuple) else ys[0]


def _uniform_grid(t: torch.Tensor, n: int) -> torch.Tensor:
    """``n`` equal steps from ``t[0]`` to ``t[-1]`` with both ends exact (torchdiffeq asserts it)."""
    grid = torch.linspace(float(t[0]), float(t[-1]), n + 1, dtype=t.dtype, device=t.device)
    grid[0], grid[-1] = t[0], t[-1]
    return grid


def collect_stats(module: nn.Module, reset: bool = True) -> dict[str, int]:
    """Sum the counters of every :class:`CountedDynamics` inside ``module`` (and reset them)."""
    total = {"nfe_forward": 0, "nfe_backward": 0}
    for m in module.modules():
        if isinstance(m, CountedDynamics):
            for k, v in m.pop_counts(reset).items():
                total[k] += v
    return total
