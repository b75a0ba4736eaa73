"""``debench status``: one line of progress from the run records (issue 18.6)."""

from __future__ import annotations

import json
import os
import time

import pytest
import yaml

from debench.cli import main
from debench.errors import ConfigError
from debench.status import find_config, progress
from tests.report_records import record as full_record

CONFIG = {
    "preset": "p", "seeds": [0, 1, 2, 3],
    "experiments": {"disc": {"table": "discrete", "datasets": ["cifar10"], "models": ["resnet20", "resnet32"],
                             "protocol": {"epochs": 1}}},
}


def record(results, model, seed, status="ok", bench_s=None, **extra):
    run = results / "runs" / "disc" / "cifar10" / model / f"seed{seed}"
    run.mkdir(parents=True)
    rec = full_record(model, seed, experiment="disc", status=status, **extra)  # a complete schema-valid record
    (run / "metrics.json").write_text(json.dumps(rec))
    if bench_s is not None:
        bench = results / "benchmarks" / "train" / "disc" / "cifar10" / model / f"seed{seed}.tsv"
        bench.parent.mkdir(parents=True, exist_ok=True)
        bench.write_text(f"s\th:m:s\tmax_rss\n{bench_s}\t0:00:00\t1.0\n")


def job_log(results, model, seed, age_s):
    log = results / "logs" / "train" / "disc" / "cifar10" / model / f"seed{seed}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("epoch 1\n")
    os.utime(log, (time.time() - age_s,) * 2)


@pytest.fixture
def survey(tmp_path):
    cfg = tmp_path / "p.yaml"
    cfg.write_text(yaml.safe_dump(CONFIG))
    results = tmp_path / "results" / "p"
    record(results, "resnet20", 0, bench_s=100)
    record(results, "resnet20", 1, bench_s=200)
    job_log(results, "resnet20", 2, age_s=60)             # running
    record(results, "resnet32", 0, train_time_s=600.0)     # no benchmark file: the record's time
    record(results, "resnet32", 1, status="diverged")      # failed record
    job_log(results, "resnet32", 2, age_s=7200)            # a job that died without a record
    return cfg, tmp_path / "results"


def test_status_counts_runs_and_estimates_time_left_per_model(survey):
    cfg, results = survey
    runs = [("disc", "cifar10", m, s) for m in ("resnet20", "resnet32") for s in range(4)]
    prog = progress(results / "p", runs, "p")
    assert (len(prog.done), len(prog.running), len(prog.failed), len(prog.left)) == (3, 1, 2, 2)
    assert ("disc", "cifar10", "resnet32", 2) in prog.failed
    # left: resnet20 s3 (mean 150 s) + resnet32 s3 (600 s); running: half of resnet20's 150 s; one job at a time
    assert prog.eta_s == pytest.approx(150 + 600 + 75)
    assert prog.line() == ("p: 3/8 done, 1 running, 2 failed, 2 left; about 14 min left "
                           "(mean of 3 finished runs, 1 at a time)")


def test_status_command_prints_the_line_and_lists_failures(survey, capsys):
    cfg, results = survey
    assert main(["status", str(cfg), "--results", str(results), "-v"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("p: 3/8 done, 1 running, 2 failed, 2 left; about 14 min")
    assert sum(line.startswith("failed: disc/cifar10/resnet32/seed") for line in out) == 2


def test_status_finds_a_preset_by_name_and_names_the_known_ones(survey):
    cfg, _ = survey
    assert find_config("p", cfg.parent) == cfg
    with pytest.raises(ConfigError, match=r"no preset 'q'.*presets there: p"):
        find_config("q", cfg.parent)


def test_status_shows_the_running_runs_epoch_error_and_time_left(survey, capsys):
    cfg, results = survey
    run = results / "p" / "runs" / "disc" / "cifar10" / "resnet20" / "seed2"
    run.mkdir(parents=True)
    # two epochs of 391 steps done, the last at 61.5% test accuracy
    (run / "epochs.csv").write_text("epoch,step,epoch_time_s,test_accuracy\n1,391,50.0,40.0\n2,782,50.0,61.5\n")
    ck = results / "p" / "checkpoints" / "disc" / "cifar10" / "resnet20" / "seed2" / "abc"
    ck.mkdir(parents=True)
    now = time.time()
    for epoch, age in ((1, 80.0), (2, 0.0)):  # the two newest checkpoints are 80 s apart
        (ck / f"ckpt-epoch{epoch:05d}.pt").write_bytes(b"")
        os.utime(ck / f"ckpt-epoch{epoch:05d}.pt", (now - age,) * 2)
    assert main(["status", str(cfg), "--results", str(results)]) == 0
    lines = capsys.readouterr().out.splitlines()
    running = [ln for ln in lines if ln.startswith("running ")]
    # protocol epochs: 1 (CONFIG): 391 steps planned, 782 done: nothing left to train
    assert running == ["running disc/cifar10/resnet20/seed2: epoch 2 of 1, step 782/391, test error 38.50% "
                       "after epoch 2, 80 s per epoch (wall), all steps done, writing its record"]


def test_running_line_estimates_time_left_from_checkpoint_gaps(tmp_path):
    from debench.status import running_line

    results = tmp_path / "r"
    rel = ("e", "cifar10", "resnet20", 0)
    run = results / "runs" / "e" / "cifar10" / "resnet20" / "seed0"
    run.mkdir(parents=True)
    (run / "epochs.csv").write_text("epoch,step,epoch_time_s,test_accuracy\n1,100,9.0,30.0\n2,200,9.0,45.25\n")
    ck = results / "checkpoints" / "e" / "cifar10" / "resnet20" / "seed0" / "h"
    ck.mkdir(parents=True)
    now = time.time()
    for epoch, age in ((1, 30.0), (2, 0.0)):
        (ck / f"ckpt-epoch{epoch:05d}.pt").write_bytes(b"")
        os.utime(ck / f"ckpt-epoch{epoch:05d}.pt", (now - age,) * 2)
    # 1,000 steps planned, 200 done: 8 epochs of 100 steps at 30 s each = 4 min left
    line = running_line(results, rel, {"iterations": 1000})
    assert line == ("running e/cifar10/resnet20/seed0: epoch 2 of 10, step 200/1000, test error 54.75% after "
                    "epoch 2, 30 s per epoch (wall), about 4 min left for this run")
    # one checkpoint only: the epoch's training time, and the line says so
    (ck / "ckpt-epoch00001.pt").unlink()
    assert "9 s per epoch (training only), about 1 min left" in running_line(results, rel, {"iterations": 1000})
    # a superseded configuration's checkpoint (another hash folder) is not this run's: no gap with it
    stale = ck.parent / "old"
    stale.mkdir()
    (stale / "ckpt-epoch00007.pt").write_bytes(b"")
    os.utime(stale / "ckpt-epoch00007.pt", (now - 3000.0,) * 2)
    assert "9 s per epoch (training only)" in running_line(results, rel, {"iterations": 1000})
    assert running_line(results, ("e", "cifar10", "resnet20", 1), {"iterations": 1000}) is None


def test_a_record_with_an_unknown_status_is_invalid_not_failed_and_says_why(survey, capsys):
    cfg, results = survey
    bad = results / "p" / "runs" / "disc" / "cifar10" / "resnet32" / "seed1" / "metrics.json"
    rec = json.loads(bad.read_text())
    bad.write_text(json.dumps({**rec, "status": "nan_loss"}))  # a status no debench writes
    runs = [("disc", "cifar10", m, s) for m in ("resnet20", "resnet32") for s in range(4)]
    prog = progress(results / "p", runs, "p")
    assert ("disc", "cifar10", "resnet32", 1) not in prog.failed and len(prog.failed) == 1
    assert [r for r, _ in prog.invalid] == [("disc", "cifar10", "resnet32", 1)]
    assert str(bad) in prog.invalid[0][1] and "column 'status': 'nan_loss' is not one of" in prog.invalid[0][1]
    assert "1 failed, 2 left, 1 invalid record(s);" in prog.line()
    assert main(["status", str(cfg), "--results", str(results)]) == 0
    assert f"invalid record: {bad}, column 'status'" in capsys.readouterr().out
