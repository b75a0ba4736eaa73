"""Per-metric tolerances of the equivalence verdict (config key ``report.tolerances``).

Each default is stated with its reason in ``config/reference/README.md`` ("Tolerances").

A tolerance is absolute (a number, in the metric's unit: ``test_error: 0.5``) or relative to the
published value (a string ending in ``%``: ``params_m: 2%``). The table prints it beside each
verdict, so a reader sees which rows were compared as a ratio to the published number.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from debench.report.schema import ReportInputError


# Defaults the config's report.tolerances may override (reasons: config/reference/README.md): a
# parameter count matches within 2% (published counts are printed to two significant digits); a
# memory or time measurement within 10%. The measurements compared with MemCNN's memory table and
# Huang et al.'s training time are a different quantity and get no verdict (report/measurements.py).
BUILTIN_TOLERANCES = {"params_m": "2%", "activation_memory_mb": "10%", "time_ratio": "10%"}


@dataclass(frozen=True)
class Tolerance:
    value: float
    relative: bool

    def bound(self, published: float) -> float:
        """The half-width of the band around ``published``, in the metric's unit."""
        return self.value / 100.0 * abs(published) if self.relative else self.value

    def allows(self, measured: float, published: float) -> bool:
        """Whether ``measured`` is within this tolerance of ``published``."""
        return abs(measured - published) <= self.bound(published) + 1e-12

    def label(self) -> str:
        return f"±{self.value:g}% (relative)" if self.relative else f"±{self.value:g} (absolute)"


def parse_tolerance(key: str, raw: object) -> Tolerance:
    """``0.5`` -> absolute 0.5; ``"2%"`` -> relative 2 %.

    Raises:
        ReportInputError: naming ``report.tolerances.<key>`` when the value is neither a positive
            number nor a positive percentage.
    """
    text = str(raw).strip()
    relative = text.endswith("%")
    try:
        value = float(text[:-1] if relative else text)
    except ValueError:
        value = math.nan
    if isinstance(raw, bool) or not value > 0 or math.isinf(value):
        raise ReportInputError(f"report.tolerances.{key}: {raw!r} is neither a positive number (absolute) "
                         "nor a positive percentage such as '2%' (relative)")
    return Tolerance(value, relative)


def parse_tolerances(raw: dict | None) -> dict[str, Tolerance]:
    """Every entry of ``report.tolerances`` parsed (:func:`parse_tolerance`), over :data:`BUILTIN_TOLERANCES`."""
    if raw is not None and not isinstance(raw, dict):
        raise ReportInputError(f"report.tolerances: expected a mapping metric -> tolerance, got {raw!r}")
    return {k: parse_tolerance(k, v) for k, v in sorted({**BUILTIN_TOLERANCES, **(raw or {})}.items())}
