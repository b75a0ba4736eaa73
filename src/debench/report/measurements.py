"""The measurement table: what ``kind: measure`` runs measured, beside the published numbers.

One row per compared quantity: a parameter count (``params_m``) against the ``params_m``
column of the model's published rows; an activation memory (``activation_memory_mb``) against
MemCNN's table, only at MemCNN's batch; the memory ratios MemCNN's rows imply (RevNet / ResNet);
the time ratio of a stochastic-depth model to its constant-depth twin, measured side by side in
one process, against Huang et al. Table 2's training-time ratio; and the forward NFE at
initialisation (no published number: shown for the record). The ``ratio`` column says which rows
are ratios. Each verdict uses the tolerance of its quantity (``report.tolerances``: a number is
absolute, ``"2%"`` relative to the published value; :data:`DEFAULT_TOLERANCES` otherwise).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from debench.report.published import DATASET_NAMES, time_saving_pct
from debench.report.tolerance import Tolerance
from debench.track.atomic import atomic_write_text

# MemCNN's README table states no batch; its experiment configs train at batch 100 (CSV notes).
PUBLISHED_BATCH = {"MEMCNN_REPRO": 100}
# Published memory rows of models whose registered reference is another table (He et al.).
MEMORY_REFERENCES = {name: {"table_id": "MEMCNN_REPRO", "model": "ResNet", "depth": str(d)}
                     for name, d in (("resnet32", 32), ("resnet110", 110), ("preact_resnet164", 164))} | {
                     f"revnet{d}": {"table_id": "MEMCNN_REPRO", "model": "RevNet", "depth": str(d)}
                     for d in (38, 110, 164)}
MEMORY_PAIRS = (("revnet38", "resnet32"), ("revnet110", "resnet110"), ("revnet164", "preact_resnet164"))
COLUMNS = ["quantity", "ratio", "experiment", "model", "against", "dataset", "n", "measured", "published", "tolerance",
           "relative_difference", "verdict", "batch_size", "published_row", "source_url"]


def _verdict(measured: float, published: float, tol: Tolerance | None, comparable: bool) -> str:
    if not comparable:
        return "not comparable"
    if published is None or math.isnan(published):
        return "no published number"
    if tol is None:
        return "no tolerance"
    if measured is None or math.isnan(measured):
        return "not reproduced"
    return "reproduced" if tol.allows(measured, published) else "not reproduced"


def _rows(published: pd.DataFrame, selector: dict[str, str], dataset: str) -> pd.DataFrame:
    rows = published[published["dataset"] == DATASET_NAMES.get(dataset, dataset)]
    for col, val in selector.items():
        rows = rows[rows[col] == str(val)]
    return rows


def _selectors(rows: pd.DataFrame) -> list[dict[str, str]]:
    """The reference selectors the run records carry (``model_meta.reference``, JSON)."""
    for raw in rows.get("model_meta.reference", pd.Series(dtype=object)).dropna():
        refs = json.loads(raw) if isinstance(raw, str) else raw
        if refs:
            return [dict(r) for r in refs]
    return []


def _first(rows: pd.DataFrame, column: str, metric: str | None = None) -> tuple[float, pd.Series | None]:
    if metric:
        rows = rows[rows["metric"] == metric]
    nums = pd.to_numeric(rows[column], errors="coerce")
    rows = rows[nums.notna()]
    if rows.empty:
        return math.nan, None
    return float(pd.to_numeric(rows[column]).iloc[0]), rows.iloc[0]


def measurement_table(measured: pd.DataFrame, published: pd.DataFrame,
                      tolerances: dict[str, Tolerance]) -> pd.DataFrame:
    """The comparison rows (see the module docstring) for the ``kind == "measure"`` runs.

    Args:
        measured: run rows of measurement runs (``runs.csv`` columns).
        published: :func:`debench.report.published.load_published`'s table.
        tolerances: parsed ``report.tolerances`` (:func:`debench.report.tolerance.parse_tolerances`).

    Returns:
        One row per compared quantity, columns :data:`COLUMNS`.

    """
    tol = tolerances
    if measured.empty:
        return pd.DataFrame(columns=COLUMNS)
    out: list[dict[str, Any]] = []
    need = ["params_m", "activation_memory_mb", "activation_batch_size", "time_ratio_to_twin", "nfe_forward_init",
            "comparable", "status", "seed", "experiment"]
    measured = measured.reindex(columns=list(measured.columns) + [c for c in need if c not in measured])
    ok = measured[measured["status"] == "ok"]
    for c in need[:5]:
        ok = ok.assign(**{c: pd.to_numeric(ok[c], errors="coerce")})
    mean = ok.groupby(["experiment", "dataset", "model"]).agg(
        params_m=("params_m", "mean"), mem=("activation_memory_mb", "mean"), batch=("activation_batch_size", "first"),
        time_ratio=("time_ratio_to_twin", "mean"), nfe=("nfe_forward_init", "mean"), n=("seed", "count"),
        comparable=("comparable", lambda s: bool(s.fillna(False).astype(bool).all())))

    def add(quantity, experiment, model, dataset, value, pub, pub_row, key, comparable, n, batch=None, against="",
            ratio=False):
        rel = (value - pub) / pub if pub and not math.isnan(pub) and value is not None else math.nan
        out.append({"quantity": quantity, "ratio": "yes" if ratio else "no", "experiment": experiment, "model": model, "against": against,
                    "dataset": dataset, "n": n, "measured": value, "published": pub,
                    "tolerance": _tol_text(tol.get(key)), "relative_difference": rel,
                    "verdict": _verdict(value, pub, tol.get(key), comparable), "batch_size": batch,
                    "published_row": "" if pub_row is None else
                    f"{pub_row['table_id']}: {pub_row['model']} {pub_row['depth']} {pub_row['variant']}".strip(),
                    "source_url": "" if pub_row is None else pub_row["source_url"]})

    for (experiment, dataset, model), r in mean.iterrows():
        pub, row = math.nan, None
        for sel in _selectors(measured[measured["model"] == model]):
            pub, row = _first(_rows(published, sel, dataset), "params_m")
            if row is not None:
                break
        add("params_m", experiment, model, dataset, r["params_m"], pub, row, "params_m", r["comparable"], r["n"])
        mem_sel = MEMORY_REFERENCES.get(model)
        if mem_sel is not None and not math.isnan(r["mem"]):
            pub, row = _first(_rows(published, mem_sel, dataset), "value", "activation_memory_mb")
            want = PUBLISHED_BATCH.get(mem_sel["table_id"])
            same = want is None or r["batch"] == want
            add("activation_memory_mb", experiment, model, dataset, r["mem"], pub, row, "activation_memory_mb",
                r["comparable"] and same, r["n"], batch=r["batch"])
        twin = _twin_of(measured, model)
        depth = _depth_of(measured, model)
        if not math.isnan(r["time_ratio"]) and twin and depth:
            saving = time_saving_pct(published, dataset, depth)
            row = _first(_rows(published, {"table_id": "HUANG16_T2", "depth": depth}, dataset), "value")[1]
            add("time_ratio", experiment, model, dataset, r["time_ratio"], 1.0 - saving / 100.0, row, "time_ratio",
                r["comparable"], r["n"], against=twin, ratio=True)
        if not math.isnan(r["nfe"]):
            add("nfe_forward_init", experiment, model, dataset, r["nfe"], math.nan, None, "nfe_forward_init", r["comparable"], r["n"])
    for a, b in MEMORY_PAIRS:
        for experiment, dataset in sorted(set(zip(ok["experiment"], ok["dataset"]))):
            if (experiment, dataset, a) not in mean.index or (experiment, dataset, b) not in mean.index:
                continue
            ra, rb = mean.loc[(experiment, dataset, a)], mean.loc[(experiment, dataset, b)]
            pa, row = _first(_rows(published, MEMORY_REFERENCES[a], dataset), "value", "activation_memory_mb")
            pb, _ = _first(_rows(published, MEMORY_REFERENCES[b], dataset), "value", "activation_memory_mb")
            same_batch = ra["batch"] == rb["batch"]
            add("activation_memory_ratio", experiment, a, dataset, ra["mem"] / rb["mem"] if same_batch else math.nan,
                pa / pb if pb else math.nan, row, "activation_memory_ratio",
                bool(ra["comparable"] and rb["comparable"]) and same_batch, min(ra["n"], rb["n"]),
                batch=ra["batch"], against=b, ratio=True)
    return pd.DataFrame(out, columns=COLUMNS)


def _twin_of(measured: pd.DataFrame, model: str) -> str:
    col = "constant_depth_twin" if "constant_depth_twin" in measured else "model_meta.constant_depth_twin"
    vals = measured.loc[measured["model"] == model, col].dropna() if col in measured else pd.Series(dtype=str)
    return str(vals.iloc[0]) if len(vals) else ""


def _depth_of(measured: pd.DataFrame, model: str) -> str:
    vals = measured.loc[measured["model"] == model, "model_meta.depth"].dropna() \
        if "model_meta.depth" in measured else pd.Series(dtype=object)
    return str(int(float(vals.iloc[0]))) if len(vals) else ""


def _tol_text(t: Tolerance | None) -> str:
    return "" if t is None else t.label()


def split_measurements(runs: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(measurement runs, training runs)``: rows with ``kind == "measure"`` and the others."""
    is_measure = runs["kind"].eq("measure") if "kind" in runs else pd.Series(False, index=runs.index)
    return runs[is_measure], runs[~is_measure]


def write_measurement_table(table: pd.DataFrame, out_dir: Path) -> None:
    """Write ``tables/measurements.{csv,md}`` under the aggregate's ``out_dir``."""
    tables = Path(out_dir) / "tables"
    atomic_write_text(tables / "measurements.csv", table.to_csv(index=False, float_format="%.6g"))
    atomic_write_text(tables / "measurements.md", _markdown(table))


def _markdown(table: pd.DataFrame) -> str:
    head = ("# Measurements beside the published numbers\n\nRows with ratio = yes compare ratios "
            "(model / against), measured side by side. Tolerances: `report.tolerances`.\n\n")
    if table.empty:
        return head + "No measurement runs.\n"
    cols = [c for c in COLUMNS if c != "source_url"]

    def cell(v: Any) -> str:
        if isinstance(v, float):
            return "" if math.isnan(v) else f"{v:.4g}"
        return json.dumps(v) if isinstance(v, (list, dict)) else str(v)

    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(cell(r[c]) for c in cols) + " |" for _, r in table.iterrows()]
    return head + "\n".join(lines) + "\n"
