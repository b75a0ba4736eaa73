"""One counter of function evaluations (NFE) for every solver and sampler, with one set of names.

A model counts the evaluations of its vector field (ODE dynamics, SDE drift and diffusion, a
score network inside a sampler) with an :class:`NFECounter` and reports them through its
``debench_stats`` hook under the names of :data:`METRICS`: ``nfe_forward`` for evaluations made
while the forward pass (or a sampler, or a likelihood solve) runs, ``nfe_backward`` for those of
an adjoint solve during ``loss.backward()``. The trainer averages them per epoch and prefixes
evaluation-time counts with ``eval_``.
"""

from __future__ import annotations

NFE_FORWARD = "nfe_forward"
NFE_BACKWARD = "nfe_backward"
METRICS = (NFE_FORWARD, NFE_BACKWARD)
PHASES = ("forward", "backward")


class NFECounter:
    """Evaluations per pass since the last :meth:`pop`.

    Attributes:
        phase: the pass the next evaluations belong to (``forward`` or ``backward``).
        solve: evaluations since the current solve began (a step cap checks it).
    """

    def __init__(self) -> None:
        self.phase = "forward"
        self.solve = 0
        self._counts = dict.fromkeys(PHASES, 0)

    def tick(self, n: int = 1) -> None:
        """Count ``n`` evaluations in the current phase."""
        self._counts[self.phase] += n
        self.solve += n

    def begin(self, phase: str) -> None:
        """Start a solve of pass ``phase``: later ticks count there; :attr:`solve` restarts at 0.

        Raises:
            ValueError: for a phase other than ``forward`` or ``backward``.
        """
        if phase not in PHASES:
            raise ValueError(f"NFE phase must be one of {PHASES}, got {phase!r}")
        self.phase, self.solve = phase, 0

    @property
    def total(self) -> int:
        """Evaluations of both passes since the last pop."""
        return sum(self._counts.values())

    def pop(self, reset: bool = True) -> dict[str, int]:
        """``{"nfe_forward": n, "nfe_backward": m}`` since the last reset; zero them unless ``reset`` is False."""
        out = {f"nfe_{k}": v for k, v in self._counts.items()}
        if reset:
            self._counts = dict.fromkeys(PHASES, 0)
        return out


def merge(stats: list[dict[str, int]]) -> dict[str, int]:
    """Sum the :meth:`NFECounter.pop` results of several counters (one per solver of a model)."""
    total = dict.fromkeys(METRICS, 0)
    for s in stats:
        for k in METRICS:
            total[k] += s.get(k, 0)
    return total
