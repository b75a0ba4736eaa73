"""The survey report: eight tables always, per-table columns, plots, regeneration from runs.csv, merging."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from debench.cli import main
from debench.report.aggregate import EVIDENCE, aggregate
from debench.report.figures import epoch_curves
from debench.report.html import build_report
from debench.report.plots import PLOTS
from debench.report.regenerate import regenerate
from debench.report.runs import merge_runs, read_runs_csv
from debench.report.tables import NOT_RUN, TABLE_NAMES
from tests.conftest import ROOT
from tests.report_records import record

PUBLISHED = ROOT / "config" / "reference" / "published_results.csv"
STORED = ROOT / "results" / "published" / "runs.csv"


def _png(path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    plt.imsave(path, np.arange(64, dtype=float).reshape(8, 8))


def write_run(root, experiment, table, model, dataset, seed, metric, value, *, comparable=False, mode="paper",
              date="2026-01-01T00:00:00+00:00", config_hash="h0", artifacts=(), extra=None, epochs=2):
    d = root / experiment / dataset / model / f"seed{seed}"
    d.mkdir(parents=True)
    rec = record(model, seed, experiment=experiment, dataset=dataset, table=table, metric=metric, value=value,
                 comparable=comparable, mode=mode, config_hash=config_hash, epoch_time_s=1.0 + seed / 10,
                 activation_memory_mb=20.0, epoch_csv="epochs.csv", provenance={"date_utc": date})
    for key, v in (extra or {}).items():
        rec[key] = {**rec[key], **v} if isinstance(v, dict) and isinstance(rec.get(key), dict) else v
    for rel in artifacts:
        if rel.endswith(".png"):
            _png(d / rel)
        else:
            (d / rel).parent.mkdir(parents=True, exist_ok=True)
            (d / rel).write_text("FID not computed: no Inception weights.\n")
    if artifacts:
        rec["artifacts"] = list(artifacts)
    pd.DataFrame({"epoch": range(1, epochs + 1), "test_accuracy": np.linspace(20, 60 + seed, epochs),
                  "nfe_forward": [26.0] * epochs}).to_csv(d / "epochs.csv", index=False)
    (d / "metrics.json").write_text(json.dumps(rec))


def make_runs(root):
    """A small results tree touching six of the eight tables (anode and latent_sde left unrun)."""
    for seed, err in enumerate([8.6, 8.7, 8.8]):  # 95% CI [8.45, 8.95] inside 8.75 ± 0.5: reproduced
        write_run(root, "resnet_he2016", "discrete", "resnet20", "cifar10", seed, "test_error", err, comparable=True)
    write_run(root, "resnet_he2016", "discrete", "resnet56", "cifar10", 0, "test_error", 7.1,
              extra={"activation_memory_mb": 65.0})
    write_run(root, "reversible", "discrete", "revnet38", "cifar10", 0, "test_error", 7.5,
              extra={"activation_memory_mb": 14.0})
    write_run(root, "discrete_common", "discrete", "resnet56", "cifar100", 0, "test_error", 30.0, mode="common")
    write_run(root, "stochastic_depth", "stochastic", "resnet110", "cifar10", 0, "test_error", 6.5,
              extra={"epoch_time_s": 4.0})
    write_run(root, "stochastic_depth", "stochastic", "stochastic_depth_resnet110", "cifar10", 0, "test_error", 5.5,
              extra={"epoch_time_s": 3.0})
    write_run(root, "neural_ode_mnist", "neural_ode", "odenet_mnist", "mnist", 0, "test_error", 0.6,
              extra={"nfe_forward": 26.0, "nfe_backward": 32.0, "model_args": {"adjoint": True}})
    write_run(root, "neural_sde_cifar", "neural_sde", "neural_sde_cifar", "cifar10", 0, "test_error", 20.0,
              extra={"acc_perturb_0": 80.0, "acc_perturb_0.1": 70.0, "acc_perturb_0.5": 40.0,
                     "model_args": {"sigma": 0.1}})
    write_run(root, "neural_sde_cifar", "neural_sde", "neural_sde_cifar_ode", "cifar10", 0, "test_error", 19.0,
              extra={"acc_perturb_0": 81.0, "acc_perturb_0.1": 60.0, "acc_perturb_0.5": 20.0,
                     "model_args": {"sigma": 0.0}})
    write_run(root, "score_sde", "generative", "score_sde_ve_cifar", "cifar10", 0, "bits_per_dim", 3.5,
              artifacts=("artifacts/fid_not_computed.txt", "artifacts/samples_em.png"),
              extra={"nfe_likelihood": 140.0, "nfe_sample_em": 1000.0})
    write_run(root, "flows_toy", "flows", "ffjord_toy", "eight_gaussians", 0, "nll", 2.9,
              artifacts=("artifacts/density.png",), extra={"nfe": 30.0})
    return root


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    runs = make_runs(tmp / "runs")
    summary = aggregate(runs, PUBLISHED, tmp / "agg", tolerances={"test_error": 0.5})
    return tmp, runs, summary


def test_every_table_is_written_even_when_its_family_did_not_run(built):
    tmp, _, _ = built
    info = json.loads((tmp / "agg" / "tables" / "summary.json").read_text())
    assert info["tables"] == list(TABLE_NAMES) and len(TABLE_NAMES) == 9
    assert set(info["tables_run"]) == {"discrete", "stochastic", "neural_ode", "neural_sde", "generative", "flows"}
    for name in TABLE_NAMES:
        for ext in ("csv", "md", "tex"):
            assert (tmp / "agg" / "tables" / f"{name}.{ext}").stat().st_size > 0
    for name in ("anode", "latent_sde"):
        assert NOT_RUN in (tmp / "agg" / "tables" / f"{name}.md").read_text()
        assert "Not yet run" in (tmp / "agg" / "tables" / f"{name}.tex").read_text()
        assert "verdict" in (tmp / "agg" / "tables" / f"{name}.csv").read_text()


def test_each_table_has_its_own_columns(built):
    tmp, _, summary = built
    md = {n: (tmp / "agg" / "tables" / f"{n}.md").read_text() for n in TABLE_NAMES}
    assert "| acc σ=0 | acc σ=0.1 | acc σ=0.5 |" in md["neural_sde"]
    assert "NFE-F" in md["neural_ode"] and "NFE-B" in md["neural_ode"] and "| adjoint |" in md["neural_ode"]
    assert "| yes |" in md["neural_ode"] and "published params (M)" in md["neural_ode"]
    assert "NFE (em)" in md["generative"] and "no Inception weights" in md["generative"]
    assert "time saved (%)" in md["stochastic"] and "acc σ" not in md["discrete"]
    sd = summary.set_index("model").loc["stochastic_depth_resnet110"]
    assert sd["time_saving_pct"] == pytest.approx(25.0)
    assert sd["published_time_saving_pct"] == pytest.approx(100 * (1 - 15.12 / 20.70))
    # paper and common mode side by side; both datasets; natural depth order
    disc = pd.read_csv(tmp / "agg" / "tables" / "discrete.csv")
    assert list(disc["mode"]) == ["paper", "paper", "paper", "common"]
    assert list(disc["model"][:3]) == ["resnet20", "resnet56", "revnet38"]
    assert set(disc["dataset"]) == {"cifar10", "cifar100"}
    verdicts = disc.set_index(["mode", "model"])["verdict"]
    assert verdicts[("paper", "resnet20")] == "reproduced" and verdicts[("common", "resnet56")] == "not comparable"


def test_runs_csv_keeps_trajectories_and_missing_metric_reasons(built):
    tmp, _, _ = built
    runs = read_runs_csv(tmp / "agg" / "runs.csv")
    curves = epoch_curves(runs, None)
    assert curves is not None and set(curves["model"]) >= {"resnet20", "odenet_mnist"}
    assert curves["test_accuracy"].notna().all()
    gen = runs.set_index("model").loc["score_sde_ve_cifar"]
    assert "Inception" in gen["fid_not_computed"]


def test_regeneration_from_runs_csv_is_byte_identical(built, tmp_path):
    tmp, _, _ = built
    stored = tmp / "agg" / "runs.csv"
    a = tmp_path / "a"
    regenerate(stored, a, PUBLISHED, tolerances={"test_error": 0.5})
    rc = main(["regenerate", "--runs-csv", str(stored), "--out", str(tmp_path / "b"), "--published", str(PUBLISHED),
               "--tolerances", '{"test_error": 0.5}'])
    assert rc == 0
    for name in sorted(p.name for p in (tmp / "agg" / "tables").iterdir()):
        original = (tmp / "agg" / "tables" / name).read_bytes()
        assert (a / "tables" / name).read_bytes() == original, name
        assert (tmp_path / "b" / "tables" / name).read_bytes() == original, name
    assert (a / "runs.csv").read_bytes() == stored.read_bytes()
    assert (a / "report" / "report.html").read_bytes() == (tmp_path / "b" / "report" / "report.html").read_bytes()
    for name in PLOTS:
        assert (a / "report" / "plots" / f"{name}.png").stat().st_size > 1000


def test_report_sections_provenance_and_not_comparable(built):
    tmp, runs, _ = built
    page = build_report(tmp / "agg", tmp / "agg" / "report", runs_dir=runs).read_text()
    # what exists first: summary, trained tables, then the families not run as one list, then provenance
    assert page.index('id="toc"') < page.index('id="summary"') < page.index('data-table="discrete"') \
        < page.index('id="not-run"') < page.index('id="source-tags"') < page.index('id="provenance"')
    info = json.loads((tmp / "agg" / "tables" / "summary.json").read_text())
    run = set(info["tables_run"])
    assert run == {"discrete", "stochastic", "neural_ode", "neural_sde", "generative", "flows"}
    for name in TABLE_NAMES:
        if name in run:
            assert f'data-table="{name}"' in page and f'id="sec-{name}"' in page and f'href="#sec-{name}"' in page
        else:  # no empty table, no placeholder: one line in the not-run list
            assert f'data-table="{name}"' not in page and f'<li data-family="{name}">' in page
    assert 'id="not-comparable"' in page and "unit" in page
    # a CPU run is named CPU, not by its machine architecture (x86_64), and shows no CUDA version
    assert "abc123" in page and f"CPU ({info['runs']} runs)" in page and "x86_64" not in page and "2.x" in page
    assert "CUDA" not in page.split('id="provenance"')[1]
    assert "<b>[PRIMARY]</b>: the paper" in page
    srcs = re.findall(r'<img [^>]*src="([^"]{0,30})', page)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)
    for ps in PLOTS.values():  # a family not run shows no plot (no placeholder figure)
        if ps.section in set(TABLE_NAMES) - run:
            assert ps.caption not in page
    assert "score_sde_ve_cifar / cifar10 / seed 0: samples_em" in page      # artifact embedded
    assert page.count('<td class="not-comparable">') >= 1
    trained = info["evidence"]["trained"]["verdicts"]
    assert trained["reproduced"] == 1 and f'reproduced <b>{trained["reproduced"]}</b>' in page


def test_every_plot_has_a_caption_file_and_a_section():
    from debench.report.tables import TABLE_SPECS

    captions = {p.stem for p in (ROOT / "workflow" / "report").glob("*.rst")}
    assert set(PLOTS) <= captions
    assert captions - set(PLOTS) == {"table", "html"}
    for name, spec in PLOTS.items():
        assert spec.section in set(TABLE_SPECS) | {"overview"}
        assert (ROOT / "workflow" / "report" / f"{name}.rst").read_text().strip() == spec.caption
    smk = (ROOT / "workflow" / "rules" / "report.smk").read_text()
    assert "report_category(PLOTS[name].section)" in smk and "report_category(table)" in smk


def test_merge_runs_dedupes_newest_wins_and_is_atomic(tmp_path):
    old, new = tmp_path / "old", tmp_path / "new"
    write_run(old, "e", "discrete", "resnet20", "cifar10", 0, "test_error", 9.0, date="2026-01-01T00:00:00+00:00")
    write_run(old, "e", "discrete", "resnet20", "cifar10", 1, "test_error", 9.5, date="2026-01-01T00:00:00+00:00")
    write_run(new, "e", "discrete", "resnet20", "cifar10", 0, "test_error", 8.0, date="2026-02-01T00:00:00+00:00")
    write_run(new, "e", "discrete", "resnet20", "cifar10", 2, "test_error", 8.5, date="2026-02-01T00:00:00+00:00",
              config_hash="h1")
    into = tmp_path / "published" / "runs.csv"
    assert main(["merge-runs", str(old), "--into", str(into)]) == 0
    assert len(read_runs_csv(into)) == 2
    assert main(["merge-runs", str(new), "--into", str(into)]) == 0
    merged = read_runs_csv(into)
    assert list(zip(merged["seed"], merged["test_error"])) == [(0, 8.0), (1, 9.5), (2, 8.5)]
    # an older copy merged later never replaces the newer row; merging is idempotent
    before = into.read_bytes()
    merge_runs([old / "e"], into)
    merge_runs([into], into)
    assert into.read_bytes() == before
    assert [p.name for p in into.parent.iterdir()] == ["runs.csv"]        # no temporary files left


def test_stored_results_rebuild_deterministically(tmp_path):
    if not STORED.exists():
        pytest.skip("results/published/runs.csv is not in this checkout")
    regenerate(STORED, tmp_path / "a", PUBLISHED)
    regenerate(STORED, tmp_path / "b", PUBLISHED)  # again: the same bytes
    info = json.loads((tmp_path / "a" / "tables" / "summary.json").read_text())
    assert info["tables"] == list(TABLE_NAMES) and info["runs"] == len(read_runs_csv(STORED))
    for name in sorted(p.name for p in (tmp_path / "a" / "tables").iterdir()):
        assert (tmp_path / "a" / "tables" / name).read_bytes() == (tmp_path / "b" / "tables" / name).read_bytes()
    assert (tmp_path / "a" / "runs.csv").read_bytes() == STORED.read_bytes()
    # by hand from the MLP's three seeds in runs.csv (test error 1.50, 1.36, 1.52): mean 1.46, sample std
    # sqrt((0.04² + 0.10² + 0.06²) / 2) = 0.087178, 95% CI 1.46 ± t(0.975, 2) 4.302653 x 0.087178 / sqrt(3) = ± 0.21656
    mlp = pd.read_csv(tmp_path / "a" / "tables" / "neural_ode.csv").set_index("model").loc["mlp300_deskew_mnist"]
    assert mlp["n"] == 3 and mlp["mean"] == pytest.approx(1.46) and mlp["std"] == pytest.approx(0.087178, abs=1e-6)
    assert (mlp["ci95_low"], mlp["ci95_high"]) == pytest.approx((1.24344, 1.67656), abs=1e-5)
    # that CI lies inside Chen et al.'s 1.60 ± 0.5 = [1.10, 2.10]: the equivalence verdict is reproduced
    assert mlp["published"] == pytest.approx(1.60) and mlp["verdict"] == "reproduced"
    # every count in results/published/README.md is the one the committed runs.csv gives
    readme = (STORED.parent / "README.md").read_text()
    names = {"trained": "trained results", "measurements": "measurements", "architecture": "architecture checks"}
    assert set(info["evidence"]) == set(names)
    for kind, e in info["evidence"].items():  # one line per kind of evidence, every verdict of the kind
        counts = ", ".join(f"{v} {e['verdicts'][v]}" for v in EVIDENCE[kind][1])
        assert f"| {names[kind]} | {e['rows']} | {counts} |" in readme, kind
    # each row counted once: the kinds add up to the rows of the tables they come from
    tables = tmp_path / "a" / "tables"
    trained_rows = sum(len(pd.read_csv(tables / f"{t}.csv")) for t in info["tables"])
    assert info["evidence"]["trained"]["rows"] == trained_rows
    assert info["evidence"]["measurements"]["rows"] == len(pd.read_csv(tables / "measurements.csv"))
    assert info["evidence"]["architecture"]["rows"] == len(pd.read_csv(tables / "architecture.csv"))
    # the report's banner gives the same numbers
    page = (tmp_path / "a" / "report" / "report.html").read_text()
    for kind, e in info["evidence"].items():
        assert f'<span data-kind="{kind}"><b>{names[kind].capitalize()}: {e["rows"]}</b>' in page, kind
    assert f"| runs | {info['runs']} ({info['runs_ok']} ok, {info['runs_failed']} failed) |" in readme


def test_merged_artifacts_travel_with_runs_csv(tmp_path):
    write_run(tmp_path / "res" / "runs", "flows_toy", "flows", "ffjord_toy", "eight_gaussians", 0, "nll", 2.9,
              artifacts=("artifacts/density.png",))
    aggregate(tmp_path / "res" / "runs", PUBLISHED, tmp_path / "res")
    into = tmp_path / "published" / "runs.csv"
    assert main(["merge-runs", str(tmp_path / "res"), "--into", str(into), "--copy-artifacts"]) == 0
    assert (tmp_path / "published" / "runs" / "flows_toy" / "eight_gaussians" / "ffjord_toy" / "seed0" / "artifacts"
            / "density.png").is_file()
    page = (regenerate(into, tmp_path / "out", PUBLISHED), tmp_path / "out" / "report" / "report.html")[1].read_text()
    assert "ffjord_toy / eight_gaussians / seed 0: density" in page
