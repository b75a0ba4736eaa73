"""Run rows: read from ``metrics.json`` files or a stored ``runs.csv``, merge, write.

One row per run (identity, parameters, metrics, provenance), so every table and plot can be
rebuilt from ``runs.csv`` alone: the per-epoch trajectory (test accuracy, NFE) is stored as a
JSON column ``trajectory`` and the reason a metric is missing (``fid_not_computed``) as text.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from debench.track.atomic import atomic_write_text

IDENTITY = ["experiment", "dataset", "model", "seed"]
DEDUPE_KEY = IDENTITY + ["config_hash"]
TRAJECTORY_COLUMNS = ("epoch", "test_accuracy", "nfe_forward", "nfe_backward")
_TEXT = {"experiment": str, "dataset": str, "model": str, "config_hash": str, "run_dir": str,
         "provenance.git_commit": str, "mlflow_run_id": str, "provenance.date_utc": str}


def read_run_dirs(runs_dir: Path) -> tuple[pd.DataFrame, list[str]]:
    """Every readable ``metrics.json`` under ``runs_dir`` as one row; unreadable ones are listed."""
    rows, problems = [], []
    for path in sorted(Path(runs_dir).rglob("metrics.json")):
        try:
            rec = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            problems.append(f"{path}: unreadable ({exc})")
            continue
        flat = {k: v for k, v in rec.items() if not isinstance(v, (dict, list))}
        for group in ("protocol", "runtime", "provenance", "data"):
            flat.update({f"{group}.{k}": json.dumps(v) if isinstance(v, list) else v
                         for k, v in (rec.get(group) or {}).items()})
        if rec.get("artifacts"):
            flat["artifacts"] = json.dumps(rec["artifacts"])
            note = path.parent / "artifacts" / "fid_not_computed.txt"
            if note.is_file():
                flat["fid_not_computed"] = note.read_text().strip()
        flat["model_args"] = json.dumps(rec.get("model_args") or {}, sort_keys=True)
        flat["run_dir"] = path.parent.relative_to(runs_dir).as_posix()
        flat["trajectory"] = _trajectory(path.parent / str(rec.get("epoch_csv") or "epochs.csv"))
        rows.append(flat)
    return normalize(pd.DataFrame(rows)), problems


def _trajectory(epochs_csv: Path) -> str | None:
    try:
        ep = pd.read_csv(epochs_csv)
    except (OSError, pd.errors.EmptyDataError, pd.errors.ParserError):
        return None
    cols = [c for c in TRAJECTORY_COLUMNS if c in ep]
    return json.dumps({c: [None if pd.isna(v) else float(v) for v in ep[c]] for c in cols}, sort_keys=True)


def adjoint_flag(model: str, model_args: object) -> str:
    """``yes``/``no``: whether the run backpropagated with the adjoint (its args, else the model's defaults)."""
    try:
        args = json.loads(model_args) if isinstance(model_args, str) else {}
    except json.JSONDecodeError:
        args = {}
    if "adjoint" not in args:
        from debench.registry import model_info

        try:
            args = model_info(model).defaults
        except KeyError:
            return ""
    return "" if "adjoint" not in args else ("yes" if args["adjoint"] else "no")


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
    """A stored ``runs.csv`` (empty frame for an empty file); floats round-trip exactly."""
    path = Path(path)
    if path.stat().st_size <= 1:
        return pd.DataFrame()
    return normalize(pd.read_csv(path, dtype=_TEXT))


def write_runs_csv(runs: pd.DataFrame, path: Path) -> None:
    atomic_write_text(path, normalize(runs).to_csv(index=False))


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
        frame, problems = load_runs(src)
        if problems:
            raise ValueError("; ".join(problems))
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
