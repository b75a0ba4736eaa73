"""The run-record format, in one place: schema version, required keys, allowed values, flattening.

A run record is the ``metrics.json`` that ``debench train`` writes (training runs and
``kind: measure`` runs alike). Its JSON Schema is ``workflow/schemas/run_record.schema.json``,
loaded here the way :func:`debench.config.load_config` loads ``config.schema.yaml``; every value
this module exports (:data:`SCHEMA_VERSION`, :data:`STATUSES`, :data:`TABLES`, :data:`REQUIRED`...)
is read from that file, so the format is defined once. Who checks what:

* ``debench train``, the measurement and ``debench track sync`` (which writes the MLflow run id
  back) validate a record before its atomic write (:func:`write_record`);
* the report, ``debench merge-runs`` and ``debench regenerate`` validate every row they read
  (:func:`check_row`: a ``metrics.json`` flattened, or one line of a ``runs.csv``);
* ``debench track sync`` and ``debench status`` validate each ``metrics.json`` before using it.

A row is the record flattened (:func:`flatten`): scalars stay, every dict group becomes
``group.key`` columns (``model_meta.reference``, ``precision.train``), lists and dicts inside are
JSON-encoded. A ``runs.csv`` row is checked against the same schema: each cell is read back to the
type the schema names for its column (a number from its text, a list from its JSON) and checked;
a cell that does not fit is refused with the file, line and column named.

This module imports nothing beyond the standard library (no torch, pandas or jsonschema): a
training process checks its record without loading a validator, and a machine without the
jsonschema package still writes and reads records. It applies the schema keywords of
:data:`KEYWORDS`; ``tests/test_record_format.py`` checks that it agrees with jsonschema.
"""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path
from typing import Any

SCHEMA_FILE = "run_record.schema.json"


class RecordFormatError(ValueError):
    """A run record or row that breaks the run-record schema; the message names file, line and column."""


@functools.lru_cache(maxsize=1)
def schema() -> dict[str, Any]:
    """The run record's JSON Schema (``workflow/schemas/run_record.schema.json``), parsed once."""
    from debench.resources import data_path  # packaged: found in a wheel install too

    return json.loads(data_path(f"schemas/{SCHEMA_FILE}").read_text())


def _props() -> dict[str, Any]:
    return schema()["properties"]


SCHEMA_VERSION: int = _props()["schema_version"]["default"]
STATUSES: tuple[str, ...] = tuple(_props()["status"]["enum"])
TABLES: tuple[str, ...] = tuple(_props()["table"]["enum"])
KINDS: tuple[str, ...] = tuple(_props()["kind"]["enum"])
MODES: tuple[str, ...] = tuple(_props()["mode"]["enum"])
# dict groups the schema describes key by key: their ``group.key`` columns are checked
GROUPS: tuple[str, ...] = tuple(k for k, v in _props().items() if v.get("type") == "object")
# flat column names a row must have (a required group contributes its required keys, ``model_meta.depth``)
REQUIRED: tuple[str, ...] = tuple(
    c for k in schema()["required"]
    for c in ([f"{k}.{s}" for s in _props()[k]["required"]] if _props()[k].get("type") == "object" else [k]))

# Groups of a record flattened into ``group.key`` MLflow parameters (the live run and track sync).
PARAM_GROUPS = ("protocol", "model_args", "runtime", "precision", "data", "model_meta")
# The run-level numbers the live run logs to MLflow as final metrics.
FINAL_KEYS = ("test_accuracy", "test_error", "best_test_accuracy", "final_test_error", "params",
              "activation_memory_mb", "peak_memory_mb", "train_time_s", "epoch_time_s",
              "epoch_time_median_s", "throughput_img_s", "nfe_forward", "nfe_backward",
              "bits_per_dim", "nll", "neg_elbo")


def column_schema(column: str) -> dict[str, Any] | None:
    """The schema of one flat column (``params``, ``model_meta.depth``), or None for a free column."""
    props = _props()
    if column in props:
        return props[column]
    group, _, key = column.partition(".")
    if key and group in GROUPS:
        return (props[group].get("properties") or {}).get(key)
    return None


def _types(column: str) -> list[str]:
    sub = column_schema(column) or {}
    t = sub.get("type", [])
    return [t] if isinstance(t, str) else list(t)


# required columns that must also hold a value (the schema does not allow null there)
NON_EMPTY: tuple[str, ...] = tuple(c for c in REQUIRED if "null" not in _types(c))


def flatten(rec: dict[str, Any]) -> dict[str, Any]:
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


def flat_params(rec: dict[str, Any]) -> dict[str, Any]:
    """MLflow parameters of a record (or its head): identity plus every resolved group as ``group.key``.

    The live run and ``debench track sync`` both log exactly these.
    """
    flat = {k: rec.get(k) for k in ("model", "dataset", "seed", "preset", "config_hash")}
    for group in PARAM_GROUPS:
        for k, v in (rec.get(group) or {}).items():
            flat[f"{group}.{k}"] = json.dumps(v) if isinstance(v, (list, dict)) else v
    return flat


def empty(v: Any) -> bool:
    """A missing value: None, NaN (an empty ``runs.csv`` cell) or blank text."""
    return v is None or (isinstance(v, float) and math.isnan(v)) or (isinstance(v, str) and not v.strip())


def _native(v: Any) -> Any:
    """numpy scalars (pandas cells) as Python values."""
    item = getattr(v, "item", None)
    return item() if callable(item) and not isinstance(v, (list, dict, str)) else v


def _read_back(column: str, v: Any) -> Any:
    """A cell as the type the schema names for its column: text numbers, booleans and JSON decoded."""
    v = _native(v)
    if empty(v):
        return None
    types = _types(column)
    if isinstance(v, str):
        text = v.strip()
        if "boolean" in types and text.lower() in ("true", "false"):
            return text.lower() == "true"
        if ("array" in types or "object" in types) and text[:1] in "[{":
            try:
                return json.loads(text)
            except json.JSONDecodeError:
                return v
        if "integer" in types or "number" in types:
            try:
                f = float(text)
            except ValueError:
                return v
            return int(f) if "integer" in types and f.is_integer() else f
    if isinstance(v, float) and "integer" in types and v.is_integer():
        return int(v)
    return v


_WORDS = {"integer": "an integer", "number": "a number", "string": "text", "boolean": "true or false",
          "array": "a JSON list", "object": "a JSON object", "null": "empty"}
# the JSON Schema keywords a column's schema may use; :func:`_problem` applies them (the test suite checks
# that it agrees with the jsonschema package), so reading and writing records needs no third-party package
KEYWORDS = frozenset({"type", "enum", "minimum", "minLength", "items", "description", "default"})


def _is(v: Any, t: str) -> bool:
    """``v`` has JSON Schema type ``t`` (an integral float is an integer, as Draft 7 says; a bool is no number)."""
    if t == "null":
        return v is None
    if t == "boolean":
        return isinstance(v, bool)
    if isinstance(v, bool):
        return False
    if t == "integer":
        return isinstance(v, int) or (isinstance(v, float) and v.is_integer())
    if t == "number":
        return isinstance(v, (int, float))
    return isinstance(v, {"string": str, "array": list, "object": dict}[t])


def _problem(sub: dict[str, Any], v: Any) -> str | None:
    """Why ``v`` breaks the column schema ``sub``, in words; None when it fits."""
    unknown = set(sub) - KEYWORDS
    if unknown:
        raise RecordFormatError(f"{SCHEMA_FILE}: keyword(s) {', '.join(sorted(unknown))} are not applied by "
                                "debench.record_format: use only " + ", ".join(sorted(KEYWORDS)))
    if "enum" in sub and not any(v == e and type(v) is type(e) for e in sub["enum"]):
        return f"{v!r} is not one of the allowed values {', '.join(map(repr, sub['enum']))}"
    types = [sub["type"]] if isinstance(sub.get("type"), str) else list(sub.get("type", []))
    if types and not any(_is(v, t) for t in types):
        return f"{v!r} is not {' or '.join(_WORDS[t] for t in types)}"
    if "minimum" in sub and _is(v, "number") and v < sub["minimum"]:
        return f"{v!r} is less than the minimum {sub['minimum']!r}"
    if "minLength" in sub and isinstance(v, str) and len(v) < sub["minLength"]:
        return f"{v!r} is shorter than {sub['minLength']} character(s)"
    if "items" in sub and isinstance(v, list):
        for i, item in enumerate(v):
            inner = _problem(sub["items"], item)
            if inner is not None:
                return f"item {i}: {inner}"
    return None


def check_row(row: dict[str, Any], where: str, partial: bool = False) -> None:
    """Refuse a flat row (a flattened record, or one line of a ``runs.csv``) that breaks the schema.

    Args:
        row: the row, cells as read (text, numbers, NaN for an empty CSV cell).
        where: the file (and line) the row came from, put in front of every message.
        partial: check only the values present (a record's head, before the run has a status).

    Raises:
        RecordFormatError: naming ``where``, the column and the bad value (the first problem found).
    """
    if partial:
        for column in sorted(row):
            sub = column_schema(column)
            value = _read_back(column, row[column]) if sub is not None else None
            problem = None if value is None else _problem(sub, value)
            if problem is not None:
                raise RecordFormatError(f"{where}, column {column!r}: {problem}")
        return
    missing = [k for k in REQUIRED if k not in row]
    if missing:
        raise RecordFormatError(f"{where}: missing field(s) {', '.join(missing)} (run-record schema "
                                f"{SCHEMA_VERSION}: rerun or re-aggregate the run with the current debench)")
    for key in NON_EMPTY:
        if empty(_native(row[key])):
            raise RecordFormatError(f"{where}: field {key!r} is empty")
    metric = str(row["metric"])
    if str(row["status"]) == "ok":
        if metric not in row:
            raise RecordFormatError(f"{where}: no column {metric!r}, the primary metric of this finished run")
        value = _native(row[metric])
        if empty(value):
            raise RecordFormatError(f"{where}: status ok but field {metric!r} (its primary metric) is empty")
        try:
            float(value)
        except (TypeError, ValueError):
            raise RecordFormatError(f"{where}: field {metric!r} (its primary metric) is {value!r}, "
                                    "not a number") from None
    for column in sorted(row, key=lambda c: (c not in REQUIRED, c)):
        sub = column_schema(column)
        if sub is None:
            continue
        value = _read_back(column, row[column])
        if value is None and column not in REQUIRED:
            continue  # an optional value left empty (a failed run has no test metrics)
        problem = _problem(sub, value)
        if problem is not None:
            if column == "schema_version" and isinstance(value, int):
                problem = f"schema_version {value}, this debench reads {SCHEMA_VERSION} or newer"
            raise RecordFormatError(f"{where}, column {column!r}: {problem}")


def check_record(rec: Any, where: str, partial: bool = False) -> None:
    """Refuse a record (a parsed ``metrics.json``) that breaks the schema.

    Args:
        rec: the record.
        where: the file it came from or goes to, put in front of every message.
        partial: check only the values present (see :func:`check_row`).

    Raises:
        RecordFormatError: naming ``where`` and the bad key (``model_meta.depth``) and value.
    """
    if not isinstance(rec, dict):
        raise RecordFormatError(f"{where}: not a JSON object")
    for group in GROUPS:
        if group in rec and not isinstance(rec[group], dict):
            raise RecordFormatError(f"{where}, key {group!r}: {rec[group]!r} is not a JSON object")
    check_row(flatten(rec), where, partial)


def read_record(path: Path) -> dict[str, Any]:
    """A ``metrics.json`` parsed and checked (nested, as written).

    Raises:
        RecordFormatError: the file is unreadable, not a JSON object, or breaks the schema.
    """
    try:
        rec = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RecordFormatError(f"{path}: unreadable ({exc})") from None
    check_record(rec, str(path))
    return rec


def write_record(path: Path, record: dict[str, Any]) -> None:
    """Check ``record`` against the run-record schema, then write it to ``path`` atomically.

    A record that breaks the schema is a bug of this debench, found after the run's work is done:
    nothing is lost, it is written to ``<path stem>.invalid.json`` beside ``path`` (which is not
    written, so the workflow does not take the run as finished) and the error names that file.

    Raises:
        RecordFormatError: naming the key and the value.
    """
    from debench.track.atomic import atomic_write_json

    path = Path(path)
    try:
        check_record(record, str(path))
    except RecordFormatError as exc:
        kept = path.with_name(f"{path.stem}.invalid.json")
        atomic_write_json(kept, record)
        raise RecordFormatError(f"{exc} (the record is kept in {kept})") from None
    atomic_write_json(path, record)
