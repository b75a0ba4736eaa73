"""Comparisons between summary rows, from what the records say: config variants and time savings.

Nothing here reads a model name: the constant-depth twin, the depth and the compile mode come
from each record's ``model_meta``, the published rows from its ``reference`` selectors.
"""

from __future__ import annotations

import math

import pandas as pd

from debench.report.published import time_saving_pct

SETTING_GROUPS = ("protocol.", "model_args.", "precision.", "data.", "runtime.", "model_meta.")
SAME_ROW = ["table", "experiment", "mode", "dataset", "model"]


def config_labels(summary: pd.DataFrame, runs: pd.DataFrame) -> list[str]:
    """Per summary row: ``""`` when its model has one config hash, else ``<hash>: what differs``.

    Args:
        summary: rows keyed by :data:`SAME_ROW` plus ``settings_hash``.
        runs: the run rows the summary was computed from.

    Returns:
        One label per summary row, in order.
    """
    first = runs.drop_duplicates(SAME_ROW + ["settings_hash"]).set_index(SAME_ROW + ["settings_hash"]).sort_index()
    settings = [c for c in runs.columns if c.startswith(SETTING_GROUPS)]
    labels = []
    hashes = summary.groupby(SAME_ROW, dropna=False)["settings_hash"].transform("nunique")
    for (i, r), n in zip(summary.iterrows(), hashes):
        if n < 2:
            labels.append("")
            continue
        peers = first.loc[tuple(r[k] for k in SAME_ROW)]
        differ = [c for c in settings if peers[c].astype(str).nunique(dropna=False) > 1]
        own = peers.loc[r["settings_hash"]]
        text = ", ".join(f"{c}={own[c]}" for c in differ) or "differs in settings the record does not list"
        labels.append(f"{str(r['settings_hash'])[:10]}: {text}")
    return labels


def time_savings(summary: pd.DataFrame, published: pd.DataFrame) -> pd.DataFrame:
    """Time per epoch saved against the record's constant-depth twin (same dataset, mode and compile mode).

    The twin is ``model_meta.constant_depth_twin``; seconds per epoch are the recorded median
    after the first epoch (``epoch_time_median_s``), else the mean with a note in ``time_note``; both
    rows timed on the same machine (``_machine``), never a row against a twin timed on another.
    The published saving (Huang et al. 2016, Table 2) is looked up when the run's reference
    selectors point at Huang et al., at the record's ``model_meta.depth``.
    """
    summary = summary.copy()
    for col in ("constant_depth_model", "constant_depth_time_s", "time_saving_pct", "published_time_saving_pct"):
        summary[col] = "" if col == "constant_depth_model" else math.nan
    for i, r in summary.iterrows():
        if not r["twin"]:
            continue
        cand = summary[(summary["model"] == r["twin"]) & (summary["dataset"] == r["dataset"])
                       & (summary["mode"] == r["mode"]) & (summary["compiled"] == r["compiled"])
                       & summary["_epoch_time"].notna()]
        elsewhere = cand[cand["_machine"] != r["_machine"]]
        cand = cand[cand["_machine"] == r["_machine"]]
        if cand.empty and not elsewhere.empty and not math.isnan(r["_epoch_time"]) and not r["time_note"]:
            summary.loc[i, "time_note"] = (f"no saving: the twin {r['twin']} was timed on another machine "
                                           f"({elsewhere['_machine'].iloc[0]}), this row on {r['_machine']}")
        cand = cand.assign(_same=cand["experiment"] != r["experiment"]).sort_values(["_same", "experiment"])
        if not cand.empty and not math.isnan(r["_epoch_time"]):
            t = float(cand["_epoch_time"].iloc[0])
            summary.loc[i, ["constant_depth_model", "constant_depth_time_s", "time_saving_pct"]] = \
                [r["twin"], t, 100.0 * (1.0 - r["_epoch_time"] / t)]
            if cand["time_note"].iloc[0] and not r["time_note"]:
                summary.loc[i, "time_note"] = f"twin: {cand['time_note'].iloc[0]}"
        huang = any(str(s.get("table_id", "")).startswith("HUANG16") for s in r["selectors"])
        if huang and not _missing(r["depth"]):
            summary.loc[i, "published_time_saving_pct"] = time_saving_pct(published, r["dataset"],
                                                                          str(int(float(r["depth"]))))
    return summary.drop(columns=["_epoch_time", "_machine"])


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or (isinstance(v, str) and not v.strip())
