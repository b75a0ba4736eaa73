"""The measurement and architecture tables: what ``kind: measure`` runs measured, beside the published numbers.

Two kinds of evidence, kept apart (``kind`` column) and counted apart in ``summary.json``:

- **architecture checks** (``params_m``): a parameter count against the ``params_m`` column of
  the model's published rows. It matches by construction when the architecture is the paper's,
  so it checks the architecture, not a result: verdict ``matches`` or ``differs``.
- **measurements** (memory, time, NFE at initialisation): one deterministic measurement compared
  as ``|measured - published|`` within the quantity's tolerance, but only when the published
  number is the *same quantity* (:data:`DIFFERENT_QUANTITY`); otherwise the row shows both numbers
  with the verdict ``different quantity`` and the reason. Ratios a pair of rows implies (RevNet /
  ResNet memory) are shown beside the memory row (``ratio_to``, ``measured_ratio``,
  ``published_ratio``), never as a verdict of their own.

Tolerances: ``report.tolerances`` (a number is absolute, ``"2%"`` relative to the published value).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from debench.report.equivalence import measured_verdict
from debench.report.published import DATASET_NAMES, time_saving_pct
from debench.report.tolerance import Tolerance
from debench.track.atomic import atomic_write_text

# MemCNN's README table states no batch; its experiment configs train at batch 100 (CSV notes).
PUBLISHED_BATCH = {"MEMCNN_REPRO": 100}
# Published memory rows of models whose registered reference is another table (He et al.).
MEMORY_REFERENCES = {name: {"table_id": "MEMCNN_REPRO", "model": "ResNet", "depth": str(d)}
                     for name, d in (("resnet32", 32), ("resnet110", 110), ("preact_resnet164", 164))} | {
                     f"{prefix}revnet{d}": {"table_id": "MEMCNN_REPRO", "model": "RevNet", "depth": str(d)}
                     for d in (38, 110, 164) for prefix in ("", "memcnn_")}
# RevNet / ResNet pairs whose memory ratio is shown beside the RevNet row (memcnn_revnet*: MemCNN's own RevNets)
MEMORY_PAIRS = tuple((f"{prefix}{a}", b) for prefix in ("", "memcnn_") for a, b in
                     (("revnet38", "resnet32"), ("revnet110", "resnet110"), ("revnet164", "preact_resnet164")))
# (quantity, published table) pairs where the published number measures something else than we do:
# shown side by side, never given a verdict. A like-for-like measurement gets its own quantity name.
DIFFERENT_QUANTITY = {
    ("activation_memory_mb", "MEMCNN_REPRO"):
        "MemCNN reports torch.cuda.memory_allocated minus the model's memory during GPU training (inputs, "
        "gradients and optimizer buffers included; memcnn/trainers/classification.py), on its own RevNet "
        "architectures; debench measures the fp32 activations autograd saves in one step of its models",
    ("time_ratio", "HUANG16_T2"):
        "Huang et al. time whole GPU training (500 epochs, data loading and evaluation included); debench "
        "times 20 CPU steps on one batch, and a linear decay to p_L = 0.5 runs about 75% of the blocks, so a "
        "ratio near 0.75 follows from the schedule alone",
}
ARCHITECTURE = "architecture"
MEASUREMENT = "measurement"
ARCH_VERDICTS = {"reproduced": "matches", "not reproduced": "differs"}
DIFFERENT = "different quantity"
COLUMNS = ["kind", "quantity", "experiment", "model", "against", "dataset", "n", "measured", "published", "tolerance",
           "relative_difference", "verdict", "reason", "ratio_to", "measured_ratio", "published_ratio", "batch_size",
           "published_row", "published_tag", "read_from", "source_url", "paper_url"]


def _verdict(quantity: str, measured: float, published: float, tol: Tolerance | None, comparable: bool,
             table_id: str) -> tuple[str, str]:
    """``(verdict, reason)`` of one measured row."""
    arch = quantity == "params_m"
    if not comparable:
        return "not comparable", "reduced preset or a different batch than the source's"
    if published is None or math.isnan(published):
        return "no published number", ""
    if (quantity, table_id) in DIFFERENT_QUANTITY:
        return DIFFERENT, DIFFERENT_QUANTITY[(quantity, table_id)]
    if tol is None:
        from debench.report.schema import ReportInputError

        raise ReportInputError(f"report.tolerances: no entry for {quantity}, which has a published number")
    eq = measured_verdict(measured, published, tol)
    return (ARCH_VERDICTS[eq.verdict] if arch else eq.verdict), eq.reason


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

    def add(quantity, experiment, model, dataset, value, pub, pub_row, comparable, n, batch=None, against=""):
        rel = (value - pub) / pub if pub and not math.isnan(pub) and value is not None else math.nan
        table_id = "" if pub_row is None else str(pub_row["table_id"])
        verdict, reason = _verdict(quantity, value, pub, tol.get(quantity), comparable, table_id)
        out.append({"kind": ARCHITECTURE if quantity == "params_m" else MEASUREMENT, "quantity": quantity,
                    "experiment": experiment, "model": model, "against": against,
                    "dataset": dataset, "n": n, "measured": value, "published": pub,
                    "tolerance": _tol_text(tol.get(quantity)), "relative_difference": rel,
                    "verdict": verdict, "reason": reason, "ratio_to": "", "measured_ratio": math.nan,
                    "published_ratio": math.nan, "batch_size": batch,
                    "published_row": "" if pub_row is None else
                    f"{pub_row['table_id']}: {pub_row['model']} {pub_row['depth']} {pub_row['variant']}".strip(),
                    "published_tag": "" if pub_row is None else str(pub_row.get("tag", "")),
                    "read_from": "" if pub_row is None else str(pub_row.get("read_from", "")),
                    "source_url": "" if pub_row is None else pub_row["source_url"],
                    "paper_url": "" if pub_row is None else str(pub_row.get("paper_url", ""))})

    for (experiment, dataset, model), r in mean.iterrows():
        pub, row = math.nan, None
        for sel in _selectors(measured[measured["model"] == model]):
            pub, row = _first(_rows(published, sel, dataset), "params_m")
            if row is not None:
                break
        add("params_m", experiment, model, dataset, r["params_m"], pub, row, r["comparable"], r["n"])
        mem_sel = MEMORY_REFERENCES.get(model)
        if mem_sel is not None and not math.isnan(r["mem"]):
            pub, row = _first(_rows(published, mem_sel, dataset), "value", "activation_memory_mb")
            want = PUBLISHED_BATCH.get(mem_sel["table_id"])
            same = want is None or r["batch"] == want
            add("activation_memory_mb", experiment, model, dataset, r["mem"], pub, row,
                r["comparable"] and same, r["n"], batch=r["batch"])
        twin = _twin_of(measured, model)
        depth = _depth_of(measured, model)
        if not math.isnan(r["time_ratio"]) and twin and depth:
            saving = time_saving_pct(published, dataset, depth)
            row = _first(_rows(published, {"table_id": "HUANG16_T2", "depth": depth}, dataset), "value")[1]
            add("time_ratio", experiment, model, dataset, r["time_ratio"], 1.0 - saving / 100.0, row,
                r["comparable"], r["n"], against=twin)
        if not math.isnan(r["nfe"]):
            add("nfe_forward_init", experiment, model, dataset, r["nfe"], math.nan, None, r["comparable"], r["n"])
    table = pd.DataFrame(out, columns=COLUMNS)
    # the ratio a pair of memory rows implies, beside the first row (never a verdict of its own)
    for a, b in MEMORY_PAIRS:
        for experiment, dataset in sorted(set(zip(ok["experiment"], ok["dataset"]))):
            if (experiment, dataset, a) not in mean.index or (experiment, dataset, b) not in mean.index:
                continue
            ra, rb = mean.loc[(experiment, dataset, a)], mean.loc[(experiment, dataset, b)]
            pa, _ = _first(_rows(published, MEMORY_REFERENCES[a], dataset), "value", "activation_memory_mb")
            pb, _ = _first(_rows(published, MEMORY_REFERENCES[b], dataset), "value", "activation_memory_mb")
            at = (table["quantity"] == "activation_memory_mb") & (table["experiment"] == experiment) \
                & (table["dataset"] == dataset) & (table["model"] == a)
            table.loc[at, "ratio_to"] = b
            table.loc[at, "measured_ratio"] = ra["mem"] / rb["mem"] if ra["batch"] == rb["batch"] else math.nan
            table.loc[at, "published_ratio"] = pa / pb if pb else math.nan
    return sort_table(table)


def sort_table(table: pd.DataFrame) -> pd.DataFrame:
    """Rows by kind (measurements first), compared rows before those without a published number,
    then quantity, dataset and model in natural order (resnet20 before resnet110)."""
    if table.empty:
        return table
    from debench.report.tables import _natural

    order = {MEASUREMENT: 0, ARCHITECTURE: 1}
    key = [(order.get(k, 2), bool(pd.isna(p)), str(q), str(d), _natural(m), str(e))
           for k, p, q, d, m, e in zip(table["kind"], table["published"], table["quantity"], table["dataset"],
                                       table["model"], table["experiment"])]
    return table.iloc[sorted(range(len(table)), key=key.__getitem__)].reset_index(drop=True)


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


def trained_architecture_rows(summary: pd.DataFrame, table: pd.DataFrame) -> pd.DataFrame:
    """Architecture checks of trained rows whose (model, dataset) no measurement run already checks.

    A trained row carries its run's parameter count and ``params_verdict``; the same count from a
    ``kind: measure`` run of the same model is the same check, so it is counted once.
    """
    if summary.empty or "params_verdict" not in summary:
        return table
    have = set(zip(table.loc[table["kind"] == ARCHITECTURE, "model"], table.loc[table["kind"] == ARCHITECTURE, "dataset"]))
    extra = []
    for _, r in summary.iterrows():
        if (r["model"], r["dataset"]) in have or "params" not in r or pd.isna(r.get("params")):
            continue
        have.add((r["model"], r["dataset"]))
        value, pub = float(r["params"]) / 1e6, float(r.get("published_params_m", math.nan))
        extra.append({"kind": ARCHITECTURE, "quantity": "params_m", "experiment": r["experiment"], "model": r["model"],
                      "against": "", "dataset": r["dataset"], "n": r["n"], "measured": value, "published": pub,
                      "tolerance": r.get("params_tolerance", ""),
                      "relative_difference": (value - pub) / pub if pub and not math.isnan(pub) else math.nan,
                      "verdict": "not comparable" if r["verdict"] == "not comparable"
                      else r["params_verdict"] or "no published number", "reason": "",
                      "ratio_to": "", "measured_ratio": math.nan, "published_ratio": math.nan, "batch_size": None,
                      "published_row": r.get("published_table", "") if not math.isnan(pub) else "",
                      "published_tag": r.get("published_tag", "") if not math.isnan(pub) else "",
                      "read_from": r.get("published_read_from", "") if not math.isnan(pub) else "",
                      "source_url": r.get("published_source", "") if not math.isnan(pub) else "",
                      "paper_url": r.get("published_paper_url", "") if not math.isnan(pub) else ""})
    if not extra:
        return table
    return sort_table(pd.concat([table, pd.DataFrame(extra, columns=COLUMNS)], ignore_index=True))


def write_measurement_table(table: pd.DataFrame, out_dir: Path) -> None:
    """Write ``tables/measurements.{csv,md}`` (memory, time, NFE) and ``tables/architecture.{csv,md}``
    (parameter counts) under the aggregate's ``out_dir``."""
    tables = Path(out_dir) / "tables"
    kind = table["kind"] if not table.empty else pd.Series(dtype=str)
    for name, k, title in (("measurements", MEASUREMENT, "Measurements beside the published numbers"),
                           ("architecture", ARCHITECTURE, "Architecture checks: parameter counts")):
        part = table[kind == k] if not table.empty else table
        atomic_write_text(tables / f"{name}.csv", part.to_csv(index=False, float_format="%.6g"))
        atomic_write_text(tables / f"{name}.md", _markdown(part, title))


def _markdown(table: pd.DataFrame, title: str) -> str:
    head = (f"# {title}\n\nOne deterministic measurement each: |measured - published| against the quantity's "
            "tolerance (`report.tolerances`); `different quantity`: the published number measures something "
            "else (the reason column says what), so no verdict.\n\n")
    if table.empty:
        return head + "No rows.\n"
    cols = [c for c in COLUMNS if c not in ("source_url", "paper_url", "kind")]

    def cell(v: Any) -> str:
        if isinstance(v, float):
            return "" if math.isnan(v) else f"{v:.4g}"
        return json.dumps(v) if isinstance(v, (list, dict)) else str(v)

    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(cell(r[c]).replace("|", "\\|") for c in cols) + " |" for _, r in table.iterrows()]
    return head + "\n".join(lines) + "\n"
