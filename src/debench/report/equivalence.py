"""The equivalence verdict: is the published number reproduced, not reproduced, or not yet settled?

A trained metric varies from seed to seed, so one run is a draw and the question is whether the
*mean* we estimate lies within the tolerance of the published value. The answer is an
equivalence test on the 95% Student-t confidence interval of the mean over the finished seeds:

- **reproduced**: the whole interval lies inside ``published ± tolerance``;
- **not reproduced**: the whole interval lies outside that band;
- **inconclusive**: the interval overlaps an edge of the band. The reason says whether the spread
  is too wide for the band (the interval is wider than the band) or the number of seeds too small,
  how many seeds would settle it at the observed mean and spread, and what one more seed can do:
  the values it would have to land in to settle it, or that no value it could give settles it
  (:func:`next_seed`).

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


@dataclass(frozen=True)
class NextSeed:
    """What one more seed can do to a verdict: the values it would have to land in for each outcome.

    ``reproduced`` is one interval ``(low, high)`` or None; ``not_reproduced`` up to two (the CI
    wholly below the band, the CI wholly above it). Empty means no value of the next seed gives
    that verdict: the seeds after it are the only way to settle it.
    """

    reproduced: tuple[float, float] | None
    not_reproduced: tuple[tuple[float, float], ...]

    @property
    def can_settle(self) -> bool:
        return self.reproduced is not None or bool(self.not_reproduced)


def next_seed(values, published: float, bound: float) -> NextSeed:
    """The values of one more seed that would make the verdict *reproduced* or *not reproduced*.

    With the next seed's value ``x``, the interval's ends over the ``n + 1`` seeds are
    ``lo(x) = mean(x) - t * s(x) / sqrt(n + 1)`` and ``hi(x) = mean(x) + t * s(x) / sqrt(n + 1)``:
    the mean is linear in ``x`` and the sample std ``s(x)`` is the norm of an affine function of
    ``x``, hence convex, so ``lo`` is concave and ``hi`` convex. Each outcome is then one interval
    of ``x`` (two for *not reproduced*), found from the extremum of a concave function and the
    roots on either side of it. Since ``t > 1``, ``lo -> -inf`` and ``hi -> +inf`` as ``|x|`` grows.

    Args:
        values: the metric of each finished seed (at least one).
        published, bound: the band ``published ± bound``.

    Returns:
        :class:`NextSeed` (empty when a value is not finite), its interval ends exact to about
        1e-12 of the values' scale.
    """
    from scipy.optimize import brentq, minimize_scalar

    # measured from the published value, so the sums of squares below lose little to cancellation
    v = np.asarray(values, dtype=float) - published
    if not np.isfinite(v).all() or not math.isfinite(published) or not math.isfinite(bound):
        return NextSeed(None, ())
    n1 = len(v) + 1
    total, squares = float(v.sum()), float((v ** 2).sum())
    t = t_quantile(n1)
    lo_band, hi_band = -bound, bound

    def ends(x: float) -> tuple[float, float]:
        mean = (total + x) / n1
        var = max((squares + x * x - n1 * mean * mean) / (n1 - 1), 0.0)
        half = t * math.sqrt(var) / math.sqrt(n1)
        return mean - half, mean + half

    # far enough out that lo < the band and hi > the band at both ends: |lo(x) - mean| and
    # |hi(x) - mean| grow like (t - 1) |x| / (n + 1), and t > 1
    scale = max(bound, float(np.abs(v).max()), 1.0)
    reach = 10.0 * n1 * (float(np.abs(v).max()) + bound + 1.0) / (t - 1.0)
    lo_x, hi_x = -reach, reach

    def superlevel(f, level: float) -> tuple[float, float] | None:
        """{x: f(x) >= level} for a concave f, below ``level`` at both ends of [lo_x, hi_x]."""
        best = minimize_scalar(lambda x: -f(x), bounds=(lo_x, hi_x), method="bounded",
                               options={"xatol": 1e-12 * scale})
        peak = float(best.x)
        if f(peak) < level:
            return None

        def g(x: float) -> float:
            return f(x) - level

        left = brentq(g, lo_x, peak, xtol=1e-12 * scale) if g(lo_x) < 0 else lo_x
        right = brentq(g, peak, hi_x, xtol=1e-12 * scale) if g(hi_x) < 0 else hi_x
        return left, right

    def inside_margin(x: float) -> float:  # concave: the min of two concave functions
        lo, hi = ends(x)
        return min(lo - lo_band, hi_band - hi)

    inside = superlevel(inside_margin, 0.0)
    below = superlevel(lambda x: -ends(x)[1], -lo_band)   # hi(x) <= lo_band (-hi is concave)
    above = superlevel(lambda x: ends(x)[0], hi_band)     # lo(x) >= hi_band
    # strict: "wholly outside" excludes touching the edge; a one-point touch is no interval
    outside = tuple((iv[0] + published, iv[1] + published) for iv in (below, above)
                    if iv is not None and iv[1] > iv[0])
    return NextSeed(None if inside is None else (inside[0] + published, inside[1] + published), outside)


def _ordinal(k: int) -> str:
    return f"{k}{'th' if 10 <= k % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(k % 10, 'th')}"


def _next_seed_clause(values, published: float, bound: float) -> str:
    nxt = next_seed(values, published, bound)
    which = f"a {_ordinal(len(values) + 1)} seed"
    if not nxt.can_settle:
        return f"no value of {which} alone can settle it"
    parts = [f"reproduced if it lands in {_fmt(nxt.reproduced[0])} to {_fmt(nxt.reproduced[1])}"] if nxt.reproduced else []
    parts += [f"not reproduced if it lands in {_fmt(lo)} to {_fmt(hi)}" for lo, hi in nxt.not_reproduced]
    return f"{which} settles it: " + ", ".join(parts)


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
        return Equivalence(INCONCLUSIVE, f"n = 1: one seed gives no confidence interval; {band}; "
                           f"{_next_seed_clause(v, published, bound)}", None)
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
    return Equivalence(INCONCLUSIVE, f"{why}; {settle}; {_next_seed_clause(v, published, bound)}", needed)


def measured_verdict(measured: float, published: float, tolerance: Tolerance) -> Equivalence:
    """One deterministic measurement against a published value: ``|measured - published|`` within the tolerance."""
    if measured is None or math.isnan(measured):
        return Equivalence(NOT_REPRODUCED, "nothing measured")
    bound = tolerance.bound(published)
    diff = abs(measured - published)
    inside = diff <= bound + 1e-12
    return Equivalence(REPRODUCED if inside else NOT_REPRODUCED,
                       f"|{_fmt(measured)} - {_fmt(published)}| = {_fmt(diff)} {'≤' if inside else '>'} {_fmt(bound)}")
