"""The vendored published numbers and how a run finds the ones it should be compared with.

A run names its published rows itself: the record's ``model_meta.reference`` selectors, so the
report never consults the model registry (a plugin model keeps its published number, and the
same ``runs.csv`` always gives the same tables).
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from debench.report.schema import ReportInputError

DEFAULT_PUBLISHED = Path("config") / "reference" / "published_results.csv"
DATASET_NAMES = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "mnist": "MNIST"}
_TAG = re.compile(r"\[([A-Z][A-Z-]*(?: abstract)?)\]")
# What each provenance tag of published_results.csv means (config/reference/README.md); the report explains
# the tags it shows with these lines. Only PRIMARY* and ORIG-REPO are the authors' own numbers.
SOURCE_TAGS = {
    "PRIMARY": "the paper's own table, read from a copy of the paper",
    "PRIMARY-TEXT": "the paper's own table, read from a text conversion of the paper",
    "PRIMARY abstract": "the paper's abstract",
    "ORIG-REPO": "the authors' official repository (README or code)",
    "SECONDARY-PWC": "a curated listing (Papers with Code) of the paper's results, not the paper",
    "SECONDARY": "another document quoting or summarising the paper (e.g. a replication's copy of its table), "
                 "not the paper",
    "REPRO": "an independent reproduction's own number, not the paper's",
}


def load_published(path: str | Path) -> pd.DataFrame:
    """Read ``published_results.csv`` (every column kept) and add its provenance ``tag``."""
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise ReportInputError(f"{path}: cannot read the published numbers ({exc})") from None
    required = {"table_id", "paper", "dataset", "model", "depth", "variant", "metric", "value", "notes", "source_url"}
    missing = required - set(df.columns)
    if missing:
        raise ReportInputError(f"{path}: missing column(s) {sorted(missing)}")
    df["tag"] = df["notes"].map(lambda s: (m.group(1) if (m := _TAG.search(s)) else ""))
    df["value_num"] = pd.to_numeric(df["value"], errors="coerce")
    return df


def default_published_csv() -> Path:
    """``config/reference/published_results.csv`` of the working directory, else of this checkout.

    Raises:
        ReportInputError: when neither exists (pass ``--published``).
    """
    from debench.resources import PACKAGE_DATA  # the copy shipped with debench (a wheel too)

    here = PACKAGE_DATA / "reference" / DEFAULT_PUBLISHED.name
    for path in (DEFAULT_PUBLISHED, here):
        if path.is_file():
            return path
    raise ReportInputError(f"no published-numbers CSV at {DEFAULT_PUBLISHED} or {here}: pass --published")


def match(published: pd.DataFrame, selectors: list[dict], dataset: str, metric: str) -> dict | None:
    """The published row to compare a run with, expressed in ``metric``.

    A row matches when its dataset is the run's and every column of one of the run's
    ``reference`` selectors (its record's ``model_meta.reference``) is equal. Rows in the same metric come first, then
    accuracy rows converted to error (error = 100 - accuracy); among those, a "mean" variant
    is preferred over a best single run.

    Args:
        published: :func:`load_published`'s table.
        selectors: dicts of published-CSV column -> value.
        dataset: the run's dataset name (``cifar10``).
        metric: the metric wanted; accuracy and error convert into each other.

    Returns:
        ``{value, metric_as_published, tag, source_url, table_id, paper, variant, published_as,
        paper_url, read_from, params_m}`` or None (``read_from``: the document the number was read
        from, ``secondary`` or ``reproduction`` when it is not the paper).
    """
    ds = DATASET_NAMES.get(dataset, dataset)
    rows = published[published["dataset"] == ds]
    hits = []
    for sel in selectors:
        mask = pd.Series(True, index=rows.index)
        for col, val in sel.items():
            if col not in rows:
                raise ReportInputError(f"reference selector {sel} names column {col!r}, which the published CSV lacks")
            mask &= rows[col] == str(val)
        hits.append(rows[mask])
    if not hits:
        return None
    cand = pd.concat(hits).drop_duplicates()
    convert = {"test_error": "test_accuracy", "test_accuracy": "test_error"}
    for wanted in (metric, convert.get(metric)):
        sub = cand[(cand["metric"] == wanted) & cand["value_num"].notna()]
        if sub.empty:
            continue
        sub = sub.assign(_mean=~sub["variant"].str.contains("mean")).sort_values("_mean", kind="stable")
        row = sub.iloc[0]
        value = row["value_num"] if wanted == metric else 100.0 - row["value_num"]
        return {"value": float(value), "metric_as_published": row["metric"], "tag": row["tag"],
                "source_url": row["source_url"], "table_id": row["table_id"], "paper": row["paper"],
                "variant": row["variant"], "published_as": row["value"],
                "paper_url": row.get("paper_url", ""), "read_from": row.get("read_from", ""),
                "params_m": float(row["params_m"]) if _is_number(row.get("params_m", "")) else float("nan")}
    return None


def _is_number(s: str) -> bool:
    try:
        float(s)
    except (TypeError, ValueError):
        return False
    return True


def time_saving_pct(published: pd.DataFrame, dataset: str, depth: str) -> float:
    """Training time saved by stochastic depth against constant depth, in % (Huang et al. 2016, Table 2)."""
    rows = published[(published["table_id"] == "HUANG16_T2") & (published["metric"] == "train_time_h")
                     & (published["dataset"] == DATASET_NAMES.get(dataset, dataset)) & (published["depth"] == str(depth))]
    const = rows[rows["model"].str.contains("constant")]["value_num"]
    sd = rows[rows["model"].str.contains("stochastic")]["value_num"]
    if const.empty or sd.empty:
        return float("nan")
    return 100.0 * (1.0 - float(sd.iloc[0]) / float(const.iloc[0]))
