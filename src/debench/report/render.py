"""Tables as CSV, Markdown and LaTeX (booktabs), with the same rounding everywhere."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from debench.track.atomic import atomic_write_text

DISPLAY = [("model", "model"), ("dataset", "dataset"), ("mode", "mode"), ("params", "params (M)"),
           ("evals_per_forward", "evals/fwd"), ("nfe_forward", "NFE-F"), ("nfe_backward", "NFE-B"),
           ("activation_memory_mb", "act. mem (MB)"), ("epoch_time_s", "s/epoch"),
           ("metric", "metric"), ("result", "reproduced (mean ± std)"), ("n", "n"), ("ci95", "95% CI"),
           ("published_cell", "published"), ("difference", "diff"), ("n_failed", "failed"),
           ("verdict", "verdict")]


def _fmt(v, digits: int = 2) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def display_frame(summary: pd.DataFrame) -> pd.DataFrame:
    """The human-facing columns: rounded, CI as an interval, published value with its tag."""
    if summary.empty:
        return pd.DataFrame(columns=[label for _, label in DISPLAY])
    s = summary.copy()
    s["params"] = s["params"] / 1e6 if "params" in s else math.nan
    s["result"] = [f"{_fmt(m)} ± {_fmt(sd)}" if not math.isnan(sd) else _fmt(m) for m, sd in zip(s["mean"], s["std"])]
    s["ci95"] = [f"[{_fmt(lo)}, {_fmt(hi)}]" if not math.isnan(lo) else "" for lo, hi in zip(s["ci95_low"], s["ci95_high"])]
    s["published_cell"] = [f"{_fmt(v)} {tag and '[' + tag + ']'}".strip() if not math.isnan(v) else ""
                           for v, tag in zip(s["published"], s["published_tag"])]
    cols = [(c, label) for c, label in DISPLAY if c in s and s[c].notna().any() or c in ("published_cell", "verdict")]
    out = pd.DataFrame({label: [_fmt(v, 3 if c == "params" else 2) for v in s[c]] for c, label in cols})
    return out


def to_markdown(df: pd.DataFrame) -> str:
    if df.empty:
        return "_no runs yet_\n"
    esc = lambda x: str(x).replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(map(esc, df.columns)) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(esc(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def to_latex(df: pd.DataFrame, caption: str) -> str:
    def tex(x: str) -> str:
        for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#"),
                     ("±", r"$\pm$")):
            x = x.replace(a, b)
        return x

    cols = "l" * max(len(df.columns), 1)
    body = [" & ".join(tex(str(v)) for v in row) + r" \\" for row in df.itertuples(index=False)]
    return "\n".join([r"\begin{table}[t]", r"\centering", f"\\caption{{{tex(caption)}}}", f"\\begin{{tabular}}{{{cols}}}",
                      r"\toprule", " & ".join(tex(c) for c in df.columns) + r" \\", r"\midrule", *body,
                      r"\bottomrule", r"\end{tabular}", r"\end{table}", ""])


def write_table(summary: pd.DataFrame, folder: Path, name: str, title: str) -> None:
    """``<name>.csv`` (all statistics, full precision), ``<name>.md`` and ``<name>.tex``."""
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / f"{name}.csv", summary.to_csv(index=False, float_format="%.6g"))
    shown = display_frame(summary)
    atomic_write_text(folder / f"{name}.md", f"## {title}\n\n" + to_markdown(shown))
    atomic_write_text(folder / f"{name}.tex", to_latex(shown, title))
