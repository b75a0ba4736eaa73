"""Figure layout for the report: one column wide, one panel per survey table, labels that never overlap.

Every plot is :data:`WIDTH_IN` wide at :data:`DPI`, so its PNG is :data:`COLUMN_PX` pixels or less and
is shown unscaled in the HTML report's column (``figure{max-width:600px}`` in
:mod:`debench.report.html`). Text is never smaller than :data:`MIN_FONT_PT`; a bar chart grows in
height with its bars, a legend sits beside its axes, never over the data. :func:`layout_problems`
is the rule the tests hold every plot to.
"""

from __future__ import annotations

import re
import textwrap
from itertools import combinations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.text import Text
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from debench.report.render import spec
from debench.report.tables import TABLE_NAMES

DPI = 110
COLUMN_PX = 600  # the report column (html.CSS: figure max-width 600px)
WIDTH_IN = 5.4  # 594 px at DPI: shown at its natural size in the column
MIN_FONT_PT = 7.0  # 10.7 px at DPI
BAR_IN = 0.17  # height per bar or legend row: 7 pt labels with a gap
PANEL_IN = 1.9  # smallest axes height of a panel
LABEL_CHARS = 30  # legend labels wrap here, so a legend takes at most ~40% of the width
RC = {"font.size": 8, "axes.titlesize": 8, "axes.labelsize": 8, "xtick.labelsize": MIN_FONT_PT,
      "ytick.labelsize": MIN_FONT_PT, "legend.fontsize": MIN_FONT_PT, "figure.titlesize": 8, "figure.dpi": DPI,
      "savefig.dpi": DPI}
MARKERS = "osD^vPX<>*"
# twelve colours told apart at a glance: matplotlib's ten, black and dark goldenrod
PALETTE = [f"C{i}" for i in range(10)] + ["#000000", "#b8860b"]
MAX_LEGEND = 12  # more entries than this and a panel colours by architecture (:func:`legend_groups`)
TITLE_CHARS = 48  # panel titles wrap here, so a long table title never runs past a narrow axes


def groups(rows: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """``(panel title, rows)`` per survey table, in the report's table order, rows without a table last.

    A panel of one dataset names it in its title (and :func:`labels` leaves it out).
    """
    if rows.empty:
        return []
    table = rows["table"].fillna("") if "table" in rows else pd.Series("", index=rows.index)
    order = [t for t in TABLE_NAMES if (table == t).any()] + sorted(set(table) - set(TABLE_NAMES))
    out = []
    for t in order:
        g = rows[table == t]
        title = spec(t).title if t in TABLE_NAMES else (t or "other")
        datasets = g["dataset"].dropna().unique() if "dataset" in g else []
        out.append((textwrap.fill(f"{title}: {datasets[0]}" if len(datasets) == 1 else title, TITLE_CHARS,
                                  break_on_hyphens=False), g))
    return out


def stem(model: str) -> str:
    """A model's architecture: its name without the depth, width or step count that ends it
    (``lm_resnet110`` -> ``lm_resnet``, ``shake_shake26_2x96d`` -> ``shake_shake``,
    ``frac_ode_cifar_a05_n16`` -> ``frac_ode_cifar_a05``); a name without one stays as it is."""
    out = re.sub(r"(_n\d+|_?\d+(_\d+x\d+d)?)$", "", model)
    return out or model


def legend_groups(models: pd.Series) -> pd.Series:
    """The legend entry of each series in a panel of more than :data:`MAX_LEGEND` series.

    Series are grouped by architecture (:func:`stem`); when there are more architectures than
    :data:`MAX_LEGEND`, all but the largest ``MAX_LEGEND - 1`` (ties by name) are pooled into one
    "other: ..." entry, which names their models.

    Args:
        models: the model of each series.

    Returns:
        Aligned with ``models``: ``"<architecture> (<n models>)"`` or ``"other: a, b, ..."``.
    """
    arch = models.astype(str).map(stem)
    sizes = arch.value_counts()
    if len(sizes) > MAX_LEGEND:
        keep = set(sorted(sizes.index, key=lambda a: (-sizes[a], a))[:MAX_LEGEND - 1])
        rest = sorted(set(models[~arch.isin(keep)].astype(str)))
        arch = arch.where(arch.isin(keep), "other: " + ", ".join(rest))
    counts = arch.value_counts()
    return arch.map(lambda a: a if a.startswith("other: ") else f"{a} ({counts[a]})")


def labels(rows: pd.DataFrame) -> pd.Series:
    """One label per series of a panel: the model, then dataset, mode and config hash where they tell apart.

    Args:
        rows: one row per series (model, and optionally dataset, mode, config_hash, machine).

    Returns:
        Labels aligned with ``rows``; the dataset is added when the panel holds several, the mode,
        the config hash (7 characters) and the machine only to series that would otherwise share a label.
    """
    out = rows["model"].astype(str)
    if "dataset" in rows and rows["dataset"].nunique() > 1:
        out = out + " / " + rows["dataset"].astype(str)
    for col in ("mode", "settings_hash", "machine"):
        if col not in rows:
            continue
        value = rows[col].astype(str) if col == "machine" else rows[col].astype(str).str[:7]
        differs = value.groupby(out).transform("nunique") > 1
        out = out.where(~differs, out + " / " + value)
    return out


def style(i: int) -> dict:
    """The i-th of 120 distinct (color, marker) pairs: the first :data:`MAX_LEGEND` differ in colour.

    Returns:
        Keyword arguments for ``plot`` or ``scatter``.
    """
    return {"color": PALETTE[i % len(PALETTE)], "marker": MARKERS[(i // len(PALETTE)) % len(MARKERS)]}


def wrap(label: str) -> str:
    """``label`` broken into lines of at most :data:`LABEL_CHARS` characters (legends, tile titles)."""
    return textwrap.fill(label, LABEL_CHARS, break_on_hyphens=False)


EMPTY = "debench:no-data"  # the label of a figure that holds no data (the HTML report leaves it out)


def empty_figure(text: str):
    """A one-column figure that says, in gray, why it holds no data (labelled :data:`EMPTY`)."""
    fig, ax = plt.subplots(figsize=(WIDTH_IN, 2.0), layout="constrained")
    fig.set_label(EMPTY)
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="gray")
    ax.set_xticks([])
    ax.set_yticks([])
    return fig


def log_x(ax, values) -> None:
    """A log x axis labelled in plain numbers: 1-2-5 ticks over two decades or less, decades beyond."""
    v = np.asarray(values, dtype=float)
    v = v[v > 0]
    decades = np.log10(v.max() / v.min()) if len(v) else 0.0
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0) if decades <= 2 else (1.0,)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())


def panels(heights: list[float]):
    """A column-wide figure of stacked panels whose axes are about ``heights`` inches tall.

    Args:
        heights: per panel, the height its bars or its legend need (:data:`BAR_IN` a row).

    Returns:
        ``(fig, axes)``; the figure adds 0.75 in a panel for its title, ticks and axis label, which
        constrained layout places around each axes.
    """
    fig = plt.figure(figsize=(WIDTH_IN, sum(heights) + 0.75 * len(heights)), layout="constrained")
    axes = fig.subplots(len(heights), 1, squeeze=False, gridspec_kw={"height_ratios": heights})[:, 0]
    return fig, list(axes)


def legend_height(entries: list[str]) -> float:
    """Inches a one-column legend of ``entries`` (wrapped) needs."""
    return 0.2 + BAR_IN * sum(wrap(e).count("\n") + 1 for e in entries)


def legend_beside(ax) -> None:
    """The axes' legend outside its right edge, labels wrapped, so it never covers the data."""
    handles, names = ax.get_legend_handles_labels()
    if handles:
        ax.legend(handles, [wrap(n) for n in names], loc="upper left", bbox_to_anchor=(1.02, 1.0),
                  borderaxespad=0.0, frameon=False)


def _drawn_texts(fig, renderer) -> list[Text]:
    hidden = set()
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            lo, hi = sorted(axis.get_view_interval())
            span = (hi - lo) * 1e-9
            for tick in axis.get_major_ticks() + axis.get_minor_ticks():
                if not lo - span <= tick.get_loc() <= hi + span:
                    hidden.update((tick.label1, tick.label2))
    return [t for t in fig.findobj(Text, include_self=False)
            if t not in hidden and t.get_visible() and t.get_text().strip()
            and t.get_window_extent(renderer).width > 0]


def layout_problems(fig) -> list[str]:
    """What breaks the layout rule in a drawn figure (an empty list when nothing does).

    The rule: the figure is at most :data:`COLUMN_PX` wide; no text is smaller than
    :data:`MIN_FONT_PT`, none reaches outside the figure, no two texts (tick labels, titles, legend
    entries) overlap, no legend overlaps any axes' data area or holds more than :data:`MAX_LEGEND` entries.

    Args:
        fig: a matplotlib figure as the report draws it.

    Returns:
        One line per problem, naming the texts involved.
    """
    fig.draw_without_rendering()
    renderer = fig.canvas.get_renderer()
    problems = []
    if fig.get_figwidth() * DPI > COLUMN_PX + 0.5:
        problems.append(f"figure is {fig.get_figwidth() * DPI:.0f} px wide at {DPI} dpi, the column {COLUMN_PX} px")
    texts = _drawn_texts(fig, renderer)
    boxes = [t.get_window_extent(renderer) for t in texts]
    for t, b in zip(texts, boxes):
        if t.get_fontsize() < MIN_FONT_PT:
            problems.append(f"{t.get_text()!r} is {t.get_fontsize():g} pt (< {MIN_FONT_PT:g})")
        if b.x0 < -1 or b.y0 < -1 or b.x1 > fig.bbox.width + 1 or b.y1 > fig.bbox.height + 1:
            problems.append(f"{t.get_text()!r} reaches outside the figure")
    for (t1, b1), (t2, b2) in combinations(zip(texts, boxes), 2):
        if b1.x0 < b2.x1 - 0.5 and b2.x0 < b1.x1 - 0.5 and b1.y0 < b2.y1 - 0.5 and b2.y0 < b1.y1 - 0.5:
            problems.append(f"{t1.get_text()!r} overlaps {t2.get_text()!r}")
    legends = list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
    for leg in legends:
        if len(leg.get_texts()) > MAX_LEGEND:
            problems.append(f"a legend of {len(leg.get_texts())} entries ({leg.get_texts()[0].get_text()!r}, ...): "
                            f"more than {MAX_LEGEND}")
        lb = leg.get_window_extent(renderer)
        for ax in fig.axes:
            if ax.axison and lb.overlaps(ax.bbox):
                problems.append(f"a legend ({leg.get_texts()[0].get_text()!r}, ...) covers the data area of "
                                f"{ax.get_title() or 'an axes'!r}")
    return problems
