"""The vendored published numbers and how a run finds the ones it should be compared with."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from debench.registry import model_info

DATASET_NAMES = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "mnist": "MNIST"}
_TAG = re.compile(r"\[([A-Z][A-Z-]*(?: abstract)?)\]")


def load_published(path: str | Path) -> pd.DataFrame:
    """Read ``published_results.csv`` (every column kept) and add its provenance ``tag``."""
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    required = {"table_id", "paper", "dataset", "model", "depth", "variant", "metric", "value", "notes", "source_url"}
    missing = required - set(df.columns)
    if missing:
        raise ValueError(f"{path}: missing column(s) {sorted(missing)}")
    df["tag"] = df["notes"].map(lambda s: (m.group(1) if (m := _TAG.search(s)) else ""))
    df["value_num"] = pd.to_numeric(df["value"], errors="coerce")
    return df


def match(published: pd.DataFrame, model: str, dataset: str, metric: str) -> dict | None:
    """The published row to compare a (model, dataset) with, expressed in ``metric``.

    A row matches when its dataset is the run's and every column of one of the model's
    registered ``reference`` selectors is equal. Rows in the same metric come first, then
    accuracy rows converted to error (error = 100 - accuracy); among those, a "mean" variant
    is preferred over a best single run.

    Returns:
        ``{value, metric_as_published, tag, source_url, table_id, paper, variant, published_as,
        params_m}`` or None.
    """
    try:
        selectors = model_info(model).reference
    except KeyError:
        return None
    ds = DATASET_NAMES.get(dataset, dataset)
    rows = published[published["dataset"] == ds]
    hits = []
    for sel in selectors:
        mask = pd.Series(True, index=rows.index)
        for col, val in sel.items():
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
