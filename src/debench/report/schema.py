"""The run-record schema as the report applies it: :mod:`debench.record_format`, with report errors.

A row (a ``metrics.json`` flattened, or one line of a ``runs.csv``) is checked by
:func:`debench.record_format.check_row` against ``workflow/schemas/run_record.schema.json``: every
required field with a value where one is needed, every value of a type and range the schema
allows (a ``table``, ``status`` or ``mode`` it lists, a number where it wants one), and, when the
run finished (``status`` ok), a value of its own primary metric. Anything else is refused with
the file, line and column named, before a single output file is written.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from debench import record_format
from debench.record_format import NON_EMPTY, REQUIRED, SCHEMA_VERSION, RecordFormatError, flatten

__all__ = ["NON_EMPTY", "REQUIRED", "SCHEMA_VERSION", "ReportInputError", "RunRecordError", "check_csv_shape",
           "check_row", "flatten_record", "read_record"]
flatten_record = flatten


class ReportInputError(ValueError):
    """Input the report refuses (a run row, a tolerance, a selector); the message names what and where."""


class RunRecordError(ReportInputError, RecordFormatError):
    """A run record or ``runs.csv`` that breaks the schema; the message names file, line and field."""


def check_row(row: dict[str, Any], where: str) -> None:
    """:func:`debench.record_format.check_row`, raising :class:`RunRecordError`.

    Args:
        row: a flat row (:func:`flatten_record`, or one line of a ``runs.csv``).
        where: the file (and line) the row came from, put in front of every message.

    Raises:
        RunRecordError: naming ``where``, the column and the bad value.
    """
    try:
        record_format.check_row(row, where)
    except RecordFormatError as exc:
        raise RunRecordError(str(exc)) from None


def read_record(path: Path) -> dict[str, Any]:
    """A ``metrics.json`` parsed, flattened and checked.

    Raises:
        RunRecordError: the file is unreadable, not a JSON object, or breaks the schema.
    """
    try:
        return flatten(record_format.read_record(path))
    except RecordFormatError as exc:
        raise RunRecordError(str(exc)) from None


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
