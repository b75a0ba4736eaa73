"""The one schema every run row is checked against, whether it comes from a ``metrics.json`` or a ``runs.csv``.

A run record (``schema_version`` 2, written by ``debench train``) is flattened into one row:
scalars stay, every dict group becomes ``group.key`` columns (``model_meta.reference``,
``precision.train``, ``data.sha256``), lists and dicts inside are JSON-encoded. A row is
accepted only when it carries every field the report reads (:data:`REQUIRED`) with a value
where one is needed (:data:`NON_EMPTY`), and, when it finished (``status`` ok), a value of its
own primary metric. Anything else is refused with the file, line and column named, before a
single output file is written.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 2
REQUIRED = ("experiment", "dataset", "model", "seed", "schema_version", "status", "metric", "table", "comparable",
            "family", "mode", "config_hash", "settings_hash", "model_meta.reference", "model_meta.depth",
            "model_meta.constant_depth_twin", "model_meta.compiled")
NON_EMPTY = ("experiment", "dataset", "model", "seed", "schema_version", "status", "metric", "table", "comparable",
             "family", "mode", "config_hash", "settings_hash", "model_meta.reference", "model_meta.compiled")


class ReportInputError(ValueError):
    """Input the report refuses (a run row, a tolerance, a selector); the message names what and where."""


class RunRecordError(ReportInputError):
    """A run record or ``runs.csv`` that breaks the schema; the message names file, line and field."""


def flatten_record(rec: dict[str, Any]) -> dict[str, Any]:
    """One ``runs.csv`` row from a record: dict groups as ``group.key``, lists and dicts JSON-encoded.

    Args:
        rec: a parsed ``metrics.json``.

    Returns:
        The flat row (not yet checked: see :func:`check_row`).
    """
    flat: dict[str, Any] = {}
    for key, value in rec.items():
        if isinstance(value, dict):
            flat.update({f"{key}.{k}": _cell(v) for k, v in value.items()})
        else:
            flat[key] = _cell(value)
    return flat


def _cell(v: Any) -> Any:
    return json.dumps(v, sort_keys=True) if isinstance(v, (list, dict)) else v


def _empty(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or (isinstance(v, str) and not v.strip())


def check_row(row: dict[str, Any], where: str) -> None:
    """Refuse a row that lacks a required field or value.

    Args:
        row: a flat row (:func:`flatten_record`, or one line of a ``runs.csv``).
        where: the file (and line) the row came from, put in front of every message.

    Raises:
        RunRecordError: naming ``where`` and the missing or bad field.
    """
    missing = [k for k in REQUIRED if k not in row]
    if missing:
        raise RunRecordError(f"{where}: missing field(s) {', '.join(missing)} (run-record schema "
                             f"{SCHEMA_VERSION}: rerun or re-aggregate the run with the current debench)")
    for key in NON_EMPTY:
        if _empty(row[key]):
            raise RunRecordError(f"{where}: field {key!r} is empty")
    try:
        version = int(float(row["schema_version"]))
        float(row["seed"])
    except (TypeError, ValueError) as exc:
        raise RunRecordError(f"{where}: schema_version and seed must be integers ({exc})") from None
    if version < SCHEMA_VERSION:
        raise RunRecordError(f"{where}: schema_version {version}, the report reads {SCHEMA_VERSION} or newer")
    try:
        refs = json.loads(row["model_meta.reference"])
    except (TypeError, json.JSONDecodeError):
        refs = None
    if not isinstance(refs, list) or not all(isinstance(r, dict) for r in refs):
        raise RunRecordError(f"{where}: field 'model_meta.reference' is not a JSON list of selector objects")
    metric = str(row["metric"])
    if str(row["status"]) == "ok":
        if metric not in row:
            raise RunRecordError(f"{where}: no column {metric!r}, the primary metric of this finished run")
        if _empty(row[metric]):
            raise RunRecordError(f"{where}: status ok but field {metric!r} (its primary metric) is empty")
        try:
            float(row[metric])
        except (TypeError, ValueError):
            raise RunRecordError(f"{where}: field {metric!r} (its primary metric) is {row[metric]!r}, not a number") from None


def read_record(path: Path) -> dict[str, Any]:
    """A ``metrics.json`` parsed, flattened and checked.

    Raises:
        RunRecordError: the file is unreadable, not a JSON object, or breaks the schema.
    """
    try:
        rec = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RunRecordError(f"{path}: unreadable ({exc})") from None
    if not isinstance(rec, dict):
        raise RunRecordError(f"{path}: not a JSON object")
    flat = flatten_record(rec)
    check_row(flat, str(path))
    return flat


def check_csv_shape(path: Path) -> list[int]:
    """Refuse a ragged ``runs.csv``: every line must have as many fields as the header.

    Returns:
        The line number of each data row (1-based, header on line 1).

    Raises:
        RunRecordError: naming the file and the first bad line, or a repeated column.
    """
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader, [])
        dup = sorted({c for c in header if header.count(c) > 1})
        if dup:
            raise RunRecordError(f"{path}: column(s) {', '.join(dup)} appear more than once in the header")
        lines = []
        for row in reader:
            if len(row) != len(header):
                raise RunRecordError(f"{path}, line {reader.line_num}: {len(row)} fields, the header has "
                                     f"{len(header)}: a ragged row is refused, not shifted")
            lines.append(reader.line_num)
    return lines
