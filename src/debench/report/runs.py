"""Run rows: read from ``metrics.json`` files or a stored ``runs.csv``, merge, write.

One row per run (identity, parameters, metrics, provenance), so every table and plot can be
rebuilt from ``runs.csv`` alone: the per-epoch trajectory (test accuracy, NFE) is stored as a
JSON column ``trajectory`` and the reason a metric is missing (``fid_not_computed``) as text.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import pandas as pd

from debench.report.schema import REQUIRED, SCHEMA_VERSION, RunRecordError, check_csv_shape, check_row, read_record
from debench.track.atomic import atomic_write_text

IDENTITY = ["experiment", "dataset", "model", "seed"]
DEDUPE_KEY = IDENTITY + ["config_hash"]
TRAJECTORY_COLUMNS = ("epoch", "step", "test_accuracy", "train_accuracy", "nfe_forward", "nfe_backward")
_TEXT = {"experiment": str, "dataset": str, "model": str, "config_hash": str, "settings_hash": str, "run_dir": str,
         "provenance.git_commit": str, "mlflow_run_id": str, "provenance.date_utc": str, "status": str,
         "metric": str, "table": str, "family": str, "mode": str, "model_meta.reference": str,
         "model_meta.constant_depth_twin": str, "model_meta.baseline": str, "model_meta.compiled": str, "model_meta.module": str}


def read_run_dirs(runs_dir: Path, paths: list[Path] | None = None,
                  unreadable: str = "fail") -> tuple[pd.DataFrame, list[str]]:
    """Run rows from ``metrics.json`` files, each checked against the record schema.

    Args:
        runs_dir: the folder the records' ``run_dir`` is relative to.
        paths: exactly these records (default: every ``metrics.json`` under ``runs_dir``).
        unreadable: ``fail`` (default): a record that cannot be read or breaks the schema stops
            everything, naming the file; ``show``: it is listed in the returned problems instead.

    Returns:
        ``(rows, problems)``: one row per record, and one line per record refused under ``show``.

    Raises:
        RunRecordError: a bad record, under ``unreadable="fail"``.
    """
    if unreadable not in ("fail", "show"):
        raise ValueError(f"unreadable must be 'fail' or 'show', not {unreadable!r}")
    runs_dir = Path(runs_dir)
    rows, problems = [], []
    for path in sorted(runs_dir.rglob("metrics.json")) if paths is None else [Path(p) for p in paths]:
        try:
            flat = read_record(path)
        except RunRecordError as exc:
            if unreadable == "fail":
                raise
            problems.append(str(exc))
            continue
        note = path.parent / "artifacts" / "fid_not_computed.txt"
        if flat.get("artifacts") and note.is_file():
            flat["fid_not_computed"] = note.read_text().strip()
        flat["run_dir"] = _relative(path.parent, runs_dir)
        flat["trajectory"] = _trajectory(path.parent / str(flat.get("epoch_csv") or "epochs.csv"))
        rows.append(flat)
    return normalize(pd.DataFrame(rows)), problems


def _relative(folder: Path, root: Path) -> str:
    try:
        return folder.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return folder.as_posix()


def _trajectory(epochs_csv: Path) -> str | None:
    try:
        ep = pd.read_csv(epochs_csv)
    except (OSError, pd.errors.EmptyDataError, pd.errors.ParserError):
        return None
    cols = [c for c in TRAJECTORY_COLUMNS if c in ep]
    return json.dumps({c: [None if pd.isna(v) else float(v) for v in ep[c]] for c in cols}, sort_keys=True)


def adjoint_flag(model_args_adjoint: object) -> str:
    """``yes``/``no``/``""``: the run's recorded ``model_args.adjoint`` (merged with the factory's defaults)."""
    if model_args_adjoint is None or (isinstance(model_args_adjoint, float) and math.isnan(model_args_adjoint)):
        return ""
    return "yes" if str(model_args_adjoint).lower() in ("true", "1", "1.0", "yes") else "no"


def machine(run: pd.Series) -> str:
    """The machine a run's times belong to: ``CPU <model>, <n> threads`` for a CPU run (its
    ``provenance.device_name`` is only the architecture, ``x86_64``), else the GPU's name."""
    def text(key):
        v = run.get(key)
        return "" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v).strip()

    threads = text("runtime.threads") or text("provenance.torch_threads")
    threads = f", {int(float(threads))} threads" if threads else ""
    if text("runtime.device_type").lower() == "cpu":
        return f"CPU {text('provenance.cpu_model') or text('provenance.device_name') or '(model not recorded)'}{threads}"
    return text("provenance.device_name") or text("runtime.device_type") or "not recorded"


def machines(runs: pd.DataFrame) -> list[str]:
    """The distinct machines (:func:`machine`) of ``runs``, sorted; times of runs on several are never averaged."""
    return sorted({machine(r) for _, r in runs.iterrows()})


def normalize(runs: pd.DataFrame) -> pd.DataFrame:
    """Rows sorted by identity, columns: identity first, the rest alphabetically (deterministic)."""
    if runs.empty:
        return runs
    runs = runs.copy()
    runs["seed"] = runs["seed"].astype(int)
    cols = [c for c in IDENTITY if c in runs] + sorted(c for c in runs if c not in IDENTITY)
    keys = [c for c in DEDUPE_KEY if c in runs]
    return runs[cols].sort_values(keys, kind="stable").reset_index(drop=True)


def read_runs_csv(path: Path) -> pd.DataFrame:
    """A stored ``runs.csv``, every row checked (empty frame for an empty file); floats round-trip exactly.

    Raises:
        RunRecordError: a ragged row, a missing column or value, naming the file, line and column.
    """
    path = Path(path)
    try:
        if path.stat().st_size <= 1:
            return pd.DataFrame()
        lines = check_csv_shape(path)
        runs = pd.read_csv(path, dtype=_TEXT)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise RunRecordError(f"{path}: unreadable ({exc})") from None
    missing = [c for c in REQUIRED if c not in runs]
    if missing:
        raise RunRecordError(f"{path}: missing column(s) {', '.join(missing)}; rows older than run-record schema "
                             f"{SCHEMA_VERSION} are refused: rebuild this file from the run folders")
    for line, row in zip(lines, runs.to_dict("records")):
        check_row(row, f"{path}, line {line}")
    return normalize(runs)


def canonical(runs: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """The rows as a stored ``runs.csv`` gives them back, and that file's text (a fixed point).

    Rows read from records and rows read from a ``runs.csv`` then hold the same values and
    types (a depth ``56`` beside an empty one is ``56.0`` in both), so aggregate, merge and
    regenerate write byte-identical files for the same runs.
    """
    if runs.empty:
        return runs, "\n"
    runs = normalize(pd.read_csv(io.StringIO(normalize(runs).to_csv(index=False)), dtype=_TEXT))
    return runs, runs.to_csv(index=False)


def write_runs_csv(runs: pd.DataFrame, path: Path) -> None:
    """``runs.csv`` (atomically) in the canonical form of :func:`canonical`."""
    atomic_write_text(path, canonical(runs)[1])


def load_runs(source: Path) -> tuple[pd.DataFrame, list[str]]:
    """Rows from a ``runs.csv``, a folder holding one, or a folder of run folders (``metrics.json``)."""
    source = Path(source)
    if source.is_file():
        return read_runs_csv(source), []
    if (source / "runs.csv").is_file():
        return read_runs_csv(source / "runs.csv"), []
    return read_run_dirs(source / "runs" if (source / "runs").is_dir() else source)


def merge_runs(sources: list[Path], into: Path, copy_artifacts: bool = False) -> pd.DataFrame:
    """Merge run rows into ``into`` (created if absent), atomically.

    Rows are deduplicated by (experiment, dataset, model, seed, config_hash); the newest
    (``provenance.date_utc``) wins; among equal dates the row already there (or the earlier
    source) is kept, so merging the same runs again changes nothing.

    Args:
        sources: ``runs.csv`` files, ``results/<preset>/`` folders or folders of run folders.
        into: the ``runs.csv`` to update.
        copy_artifacts: also copy each kept run's model artifacts (PNG, text) from its run folder
            to ``<into's folder>/runs/<run_dir>/``, where ``debench regenerate`` finds them.

    Returns:
        The merged rows, as written.
    """
    frames = [read_runs_csv(into)] if Path(into).is_file() else []
    homes = [None] * len(frames)
    for src in sources:
        frame, _ = load_runs(src)
        frames.append(frame)
        homes.append(_runs_home(Path(src)))
    frames = [f.assign(_order=i) for i, f in enumerate(frames) if not f.empty]
    if not frames:
        merged = pd.DataFrame()
    else:
        merged = pd.concat(frames, ignore_index=True)
        date = merged["provenance.date_utc"].fillna("") if "provenance.date_utc" in merged else ""
        # ascending date, and among equal dates the earlier source last: keep="last" keeps it
        merged = (merged.assign(_date=date, _order=-merged["_order"]).sort_values(["_date", "_order"], kind="stable")
                  .drop_duplicates([c for c in DEDUPE_KEY if c in merged], keep="last"))
        if copy_artifacts:
            _copy_artifacts(merged, homes, Path(into).parent / "runs")
        merged = merged.drop(columns=["_date", "_order"])
    write_runs_csv(merged, into)
    return normalize(merged)


def _runs_home(src: Path) -> Path | None:
    """The folder that a source's ``run_dir`` values are relative to."""
    if src.is_file():
        src = src.parent
    return src / "runs" if (src / "runs").is_dir() else src if src.is_dir() else None


def _copy_artifacts(merged: pd.DataFrame, homes: list[Path | None], dest: Path) -> None:
    import shutil

    if "artifacts" not in merged:
        return
    for _, r in merged.dropna(subset=["artifacts"]).iterrows():
        home = homes[-int(r["_order"])]  # _order holds minus the source's index
        for rel in json.loads(r["artifacts"]) if home is not None else []:
            src, dst = home / str(r["run_dir"]) / rel, dest / str(r["run_dir"]) / rel
            if src.is_file() and src.resolve() != dst.resolve():
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, dst)
