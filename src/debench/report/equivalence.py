"""The equivalence verdict: is the published number reproduced, not reproduced, or not yet settled?

A trained metric varies from seed to seed, so one run is a draw and the question is whether the
*mean* we estimate lies within the tolerance of the published value. The answer is an
equivalence test on the 95% Student-t confidence interval of the mean over the finished seeds:

- **reproduced**: the whole interval lies inside ``published ± tolerance``;
- **not reproduced**: the whole interval lies outside that band;
- **inconclusive**: the interval overlaps an edge of the band. The reason says whether the spread
  is too wide for the band (the interval is wider than the band) or the number of seeds too small,
  and how many seeds would settle it at the observed mean and spread.

More noise or fewer seeds widen the interval and so can only make a verdict *inconclusive*, never
a pass. A deterministic measurement (a parameter count, a memory or time measurement taken once)
has no interval: it compares ``|measured - published|`` with the tolerance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from debench.report.tolerance import Tolerance

REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE = "reproduced", "not reproduced", "inconclusive"
MAX_SEEDS = 10_000


@dataclass(frozen=True)
class Equivalence:
    """A verdict with its reason and, when inconclusive, the seeds that would settle it."""

    verdict: str
    reason: str
    seeds_needed: int | None = None


def t_quantile(n: int) -> float:
    """The two-sided 95% Student-t quantile with ``n - 1`` degrees of freedom."""
    from scipy import stats

    return float(stats.t.ppf(0.975, n - 1))


def half_width(n: int, std: float) -> float:
    """Half the 95% confidence interval of a mean of ``n`` values with sample std ``std``."""
    return t_quantile(n) * std / math.sqrt(n)


def seeds_to_settle(mean: float, std: float, published: float, bound: float) -> int | None:
    """The fewest seeds whose 95% CI, at this mean and std, lies wholly inside or wholly outside the band.

    Args:
        mean, std: the observed mean and sample standard deviation.
        published: the published value; the band is ``published ± bound``.
        bound: the tolerance in the metric's unit.

    Returns:
        The number of seeds (at least 2), or None when no number up to :data:`MAX_SEEDS` settles
        it (the mean sits on the band's edge).
    """
    margin = abs(abs(mean - published) - bound)
    if margin == 0.0:
        return None
    if std == 0.0:
        return 2
    for n in range(2, MAX_SEEDS + 1):
        if half_width(n, std) < margin:
            return n
    return None


def _fmt(x: float) -> str:
    return f"{x:.3g}"


def trained_verdict(values, published: float, tolerance: Tolerance) -> Equivalence:
    """The equivalence verdict of a trained metric's seeds against a published value.

    Args:
        values: the metric of each finished seed.
        published: the published value (same unit).
        tolerance: the metric's tolerance (absolute, or relative to ``published``).

    Returns:
        :class:`Equivalence` (see the module docstring).
    """
    v = np.asarray(values, dtype=float)
    n = len(v)
    bound = tolerance.bound(published)
    lo_band, hi_band = published - bound, published + bound
    band = f"band {_fmt(lo_band)} to {_fmt(hi_band)} ({_fmt(published)} ± {_fmt(bound)})"
    if n == 0:
        return Equivalence(NOT_REPRODUCED, "no seed finished")
    if n == 1:
        return Equivalence(INCONCLUSIVE, f"n = 1: one seed gives no confidence interval; {band}", None)
    mean, std = float(v.mean()), float(v.std(ddof=1))
    half = half_width(n, std)
    lo, hi = mean - half, mean + half
    ci = f"95% CI {_fmt(lo)} to {_fmt(hi)}"
    if lo_band <= lo and hi <= hi_band:
        return Equivalence(REPRODUCED, f"{ci} inside the {band}")
    if hi < lo_band or lo > hi_band:
        return Equivalence(NOT_REPRODUCED, f"{ci} wholly outside the {band}")
    needed = seeds_to_settle(mean, std, published, bound)
    why = (f"spread too wide: the {ci} (std {_fmt(std)}, n = {n}) is wider than the {band}" if half > bound
           else f"n = {n} too small: the {ci} overlaps an edge of the {band}")
    settle = (f"about {needed} seeds at the observed spread would settle it" if needed is not None
              else "the mean lies on the band's edge: no number of seeds settles it")
    return Equivalence(INCONCLUSIVE, f"{why}; {settle}", needed)


def measured_verdict(measured: float, published: float, tolerance: Tolerance) -> Equivalence:
    """One deterministic measurement against a published value: ``|measured - published|`` within the tolerance."""
    if measured is None or math.isnan(measured):
        return Equivalence(NOT_REPRODUCED, "nothing measured")
    bound = tolerance.bound(published)
    diff = abs(measured - published)
    inside = diff <= bound + 1e-12
    return Equivalence(REPRODUCED if inside else NOT_REPRODUCED,
                       f"|{_fmt(measured)} - {_fmt(published)}| = {_fmt(diff)} {'≤' if inside else '>'} {_fmt(bound)}")
