"""The ``debench`` command: train, prepare-data, models, track, aggregate, report, bench."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path


def _spec(arg: str) -> dict:
    if arg.startswith("@"):
        return json.loads(Path(arg[1:]).read_text())
    return json.loads(arg)


def cmd_train(a: argparse.Namespace) -> int:
    from debench.train.loop import train

    spec = _spec(a.spec)
    if a.threads:
        spec.setdefault("runtime", {})["threads"] = a.threads
    if a.tracking_ids:
        ids = json.loads(Path(a.tracking_ids).read_text())["experiment_ids"]
        spec.setdefault("tracking", {})["experiment_id"] = ids.get(spec["experiment"])
    record = train(spec)
    key = record["metric"]
    print(f"{record['model']} {record['dataset']} seed {record['seed']}: status {record['status']}, "
          f"{key} {record.get(key)}", file=sys.stderr)
    return 0


def cmd_prepare(a: argparse.Namespace) -> int:
    from debench.data.cache import prepare_dataset

    options = json.loads(a.options) if a.options else {}
    meta = prepare_dataset(a.dataset, a.source, Path(a.out), **options)
    print(f"cached {a.dataset} ({meta['source']}): {meta['train_size']} train / {meta['test_size']} test "
          f"-> {a.out} (sha256 {meta['sha256'][:12]})", file=sys.stderr)
    return 0


def cmd_models(a: argparse.Namespace) -> int:
    from debench.registry import list_models, model_info

    for name in list_models(a.pattern, family=a.family):
        i = model_info(name)
        print(f"{name:28s} {i.family:11s} {i.task:10s} {i.scheme:34s} {i.paper}")
    return 0


def cmd_track_init(a: argparse.Namespace) -> int:
    from debench.track.atomic import atomic_write_json
    from debench.track.tracker import init_store, redact

    ids = init_store(a.uri, a.experiments) if a.enabled else {}
    atomic_write_json(a.out, {"tracking_uri": redact(a.uri), "experiment_ids": ids})
    return 0


def cmd_aggregate(a: argparse.Namespace) -> int:
    from debench.report.aggregate import aggregate

    aggregate(Path(a.runs), Path(a.published), Path(a.out), tolerances=json.loads(a.tolerances or "{}"),
              expected=json.loads(Path(a.expected).read_text()) if a.expected else None)
    return 0


def cmd_report(a: argparse.Namespace) -> int:
    from debench.report.html import build_report

    build_report(Path(a.tables), Path(a.out), runs_dir=Path(a.runs) if a.runs else None)
    return 0


def cmd_regenerate(a: argparse.Namespace) -> int:
    from debench.report.regenerate import regenerate

    regenerate(Path(a.runs_csv), Path(a.out), Path(a.published),
               tolerances=json.loads(a.tolerances) if a.tolerances else None,
               runs_dir=Path(a.runs_dir) if a.runs_dir else None)
    print(f"tables and report rebuilt from {a.runs_csv} -> {a.out}", file=sys.stderr)
    return 0


def cmd_merge_runs(a: argparse.Namespace) -> int:
    from debench.report.runs import merge_runs

    merged = merge_runs([Path(s) for s in a.sources], Path(a.into))
    print(f"{len(merged)} run(s) in {a.into}", file=sys.stderr)
    return 0


def cmd_regenerate(a: argparse.Namespace) -> int:
    from debench.report.regenerate import regenerate

    regenerate(Path(a.runs_csv), Path(a.out), Path(a.published),
               tolerances=json.loads(a.tolerances) if a.tolerances else None,
               runs_dir=Path(a.runs_dir) if a.runs_dir else None)
    print(f"tables and report rebuilt from {a.runs_csv} -> {a.out}", file=sys.stderr)
    return 0


def cmd_merge_runs(a: argparse.Namespace) -> int:
    from debench.report.runs import merge_runs

    merged = merge_runs([Path(s) for s in a.sources], Path(a.into), copy_artifacts=a.copy_artifacts)
    print(f"{len(merged)} run(s) in {a.into}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    p = argparse.ArgumentParser(prog="debench", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)

    t = sub.add_parser("train", help="train one run from a JSON spec (the Snakemake train rule calls this)")
    t.add_argument("--spec", required=True, help="run spec as JSON, or @path to a JSON file")
    t.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    t.add_argument("--tracking-ids", default=None, help="experiments.json written by `debench track init`")
    t.set_defaults(func=cmd_train)

    d = sub.add_parser("prepare-data", help="cache one dataset under resources/")
    d.add_argument("--dataset", required=True)
    d.add_argument("--source", default="torchvision", choices=["torchvision", "npz", "synthetic"])
    d.add_argument("--out", required=True, help="path of the .npz cache (a .json sidecar is written beside)")
    d.add_argument("--options", default=None, help="JSON: npz_dir, download_dir, train_size, test_size, seed")
    d.set_defaults(func=cmd_prepare)

    m = sub.add_parser("models", help="list registered models")
    m.add_argument("pattern", nargs="?", default="*")
    m.add_argument("--family", default=None)
    m.set_defaults(func=cmd_models)

    tr = sub.add_parser("track", help="MLflow store management")
    tsub = tr.add_subparsers(dest="track_cmd", required=True)
    ti = tsub.add_parser("init", help="create the store and experiments once, before jobs fan out")
    ti.add_argument("--uri", required=True)
    ti.add_argument("--experiments", nargs="+", required=True)
    ti.add_argument("--out", required=True)
    ti.add_argument("--disabled", dest="enabled", action="store_false")
    ti.set_defaults(func=cmd_track_init)

    ag = sub.add_parser("aggregate", help="collect metrics.json files into runs.csv and tables")
    ag.add_argument("--runs", required=True, help="folder searched for */metrics.json")
    ag.add_argument("--published", required=True, help="published_results.csv")
    ag.add_argument("--out", required=True, help="output folder for runs.csv and tables/")
    ag.add_argument("--tolerances", default=None, help="JSON {metric: absolute tolerance}")
    ag.add_argument("--expected", default=None, help="JSON file listing the runs the config expects")
    ag.set_defaults(func=cmd_aggregate)

    r = sub.add_parser("report", help="plots and the self-contained HTML report from tables")
    r.add_argument("--tables", required=True)
    r.add_argument("--runs", default=None)
    r.add_argument("--out", required=True, help="report folder (report.html and plots)")
    r.set_defaults(func=cmd_report)

    rg = sub.add_parser("regenerate", help="rebuild tables, plots and the HTML report from a runs.csv (no training)")
    rg.add_argument("--runs-csv", required=True, help="stored runs, e.g. results/published/runs.csv")
    rg.add_argument("--out", required=True, help="output folder: runs.csv, tables/, report/")
    rg.add_argument("--published", default="config/reference/published_results.csv")
    rg.add_argument("--tolerances", default=None, help="JSON {metric: absolute tolerance} (default: the survey's)")
    rg.add_argument("--runs-dir", default=None, help="run folders with model artifacts (optional)")
    rg.set_defaults(func=cmd_regenerate)

    mr = sub.add_parser("merge-runs", help="merge runs (runs.csv files or results folders) into one runs.csv")
    mr.add_argument("sources", nargs="+", help="runs.csv files, results/<preset>/ folders or folders of run folders")
    mr.add_argument("--into", required=True, help="the runs.csv to update (newest row per run wins)")
    mr.set_defaults(func=cmd_merge_runs)

    rg = sub.add_parser("regenerate", help="rebuild tables, plots and the HTML report from a runs.csv (no training)")
    rg.add_argument("--runs-csv", required=True, help="stored runs, e.g. results/published/runs.csv")
    rg.add_argument("--out", required=True, help="output folder: runs.csv, tables/, report/")
    rg.add_argument("--published", default="config/reference/published_results.csv")
    rg.add_argument("--tolerances", default=None, help="JSON {metric: absolute tolerance} (default: the survey's)")
    rg.add_argument("--runs-dir", default=None, help="run folders with model artifacts (optional)")
    rg.set_defaults(func=cmd_regenerate)

    mr = sub.add_parser("merge-runs", help="merge runs (runs.csv files or results folders) into one runs.csv")
    mr.add_argument("sources", nargs="+", help="runs.csv files, results/<preset>/ folders or folders of run folders")
    mr.add_argument("--into", required=True, help="the runs.csv to update (newest row per run wins)")
    mr.add_argument("--copy-artifacts", action="store_true",
                    help="copy the kept runs' model artifacts to runs/ beside --into (embedded by regenerate)")
    mr.set_defaults(func=cmd_merge_runs)

    a = p.parse_args(argv)
    from debench.data.cache import DatasetError
    from debench.errors import ConfigError
    from debench.registry import UnknownModelError

    try:
        return a.func(a)
    except (ConfigError, DatasetError, UnknownModelError) as exc:
        print(f"debench {a.cmd}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
