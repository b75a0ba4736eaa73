"""``debench status``: one line of progress from the run records (issue 18.6)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from debench.cli import main
from debench.errors import ConfigError
from debench.status import Live, campaign_state, find_config, live_jobs, progress
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


def job_log(results, model, seed, age_s, text="[m/cifar10/seed0] epoch 1/164 step 85\n"):
    log = results / "logs" / "train" / "disc" / "cifar10" / model / f"seed{seed}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(text)
    os.utime(log, (time.time() - age_s,) * 2)
    return log


PROC = pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="reads live processes from /proc")


def started(argv, cwd=None):
    """``subprocess.Popen(argv)``, returned once the process reads as ``argv`` in /proc. Popen returns
    when exec has begun, but the kernel sets the new command line a little later (an empty, or the
    parent's, /proc/<pid>/cmdline meanwhile, which live_jobs skips and `ps -o args=` shows): under
    load a stand-in was missed ("len(live.snakemakes) == 0", seen twice in CI)."""
    proc = subprocess.Popen(argv, cwd=cwd)
    cmdline, deadline = Path(f"/proc/{proc.pid}/cmdline"), time.monotonic() + 30
    own = "\0".join(map(str, argv)).encode()
    while cmdline.exists() and not cmdline.read_bytes().startswith(own) and time.monotonic() < deadline:
        time.sleep(0.01)
    return proc


@pytest.fixture
def spawn():
    """Start stand-in processes (a sleeping Python whose command line reads as `debench train --spec ...`
    or as `snakemake ...`); each is killed, by its own handle, at the end of the test."""
    procs = []

    def start(*argv, cwd=None):
        procs.append(started([sys.executable, *argv], cwd=cwd))
        return procs[-1]

    def train(metrics, cwd=None):
        spec = json.dumps({"paths": {"metrics": str(metrics)}, "model": "resnet20"})
        return start("-c", "import time; time.sleep(120)", "debench", "train", "--spec", spec, "--threads", "1",
                     cwd=cwd)

    def snakemake(folder, *args, cwd):
        script = Path(folder) / "snakemake"
        if not script.exists():  # written once: rewriting it while an earlier stand-in still starts
            script.write_text("import time\ntime.sleep(120)\n")  # let that one read it empty and exit (CI)
        return start(str(script), *args, cwd=cwd)

    start.train, start.snakemake = train, snakemake
    yield start
    for proc in procs:
        proc.kill()
        proc.wait()


RUNS = [("disc", "cifar10", m, s) for m in ("resnet20", "resnet32") for s in range(4)]
METRICS_S2 = Path("results/p/runs/disc/cifar10/resnet20/seed2/metrics.json")  # of the running run, from tmp_path


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
    prog = progress(results / "p", runs, "p", live=None)  # no /proc: the logs' age decides
    assert (len(prog.done), len(prog.running), len(prog.failed), len(prog.left)) == (3, 1, 2, 2)
    assert ("disc", "cifar10", "resnet32", 2) in prog.failed
    # left: resnet20 s3 (mean 150 s) + resnet32 s3 (600 s); running: half of resnet20's 150 s; one job at a time
    assert prog.eta_s == pytest.approx(150 + 600 + 75)
    assert prog.line() == ("p: 3/8 done, 1 running, 2 failed, 2 left; about 14 min left "
                           "(mean of 3 finished runs, 1 at a time)")


@PROC
def test_status_command_prints_the_line_and_lists_failures(survey, capsys, spawn):
    cfg, results = survey
    spawn.train(METRICS_S2, cwd=results.parent)  # resnet20 seed2 trains; resnet32 seed2's job is gone
    assert main(["status", str(cfg), "--results", str(results), "-v"]) == 0
    out = capsys.readouterr().out.splitlines()
    # left 150 + 600 s, stopped 600 s (counted whole), running half of 150 s: 1,425 s, one job at a time
    assert out[0] == ("p: 3/8 done, 1 running, 1 stopped, 1 failed, 2 left; about 24 min left "
                      "(mean of 3 finished runs, 1 at a time)")
    assert [ln for ln in out if ln.startswith("failed: ")] == [
        f"failed: disc/cifar10/resnet32/seed1 (log: {results}/p/logs/train/disc/cifar10/resnet32/seed1.log): "
        "record status diverged"]
    assert (f"stopped disc/cifar10/resnet32/seed2: no live process; no checkpoint: restarts from epoch 1; "
            f"no Snakemake works in {results.parent.resolve()}: rerun it (--rerun-incomplete) to resume") in out


def test_status_finds_a_preset_by_name_and_names_the_known_ones(survey):
    cfg, _ = survey
    assert find_config("p", cfg.parent) == cfg
    with pytest.raises(ConfigError, match=r"no preset 'q'.*presets there: p"):
        find_config("q", cfg.parent)


@PROC
def test_status_shows_the_running_runs_epoch_error_and_time_left(survey, capsys, spawn):
    cfg, results = survey
    spawn.train(results.parent / METRICS_S2)
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
                       "after epoch 2, 80 s per epoch (median of 2, wall), all steps done, writing its record"]


def epochs(results, run, times, steps=100, accuracy=45.25, ckpt_gaps=(), folder="h"):
    """Write a run's epochs.csv (one row per epoch time, ``steps`` steps each) and, when ``ckpt_gaps``
    are given, its newest checkpoints that many seconds apart (the last one just now)."""
    rel = Path(run[0]) / run[1] / run[2] / f"seed{run[3]}"
    folder_ = results / "runs" / rel
    folder_.mkdir(parents=True, exist_ok=True)
    rows = [f"{k},{k * steps},{t},{accuracy}" for k, t in enumerate(times, 1)]
    (folder_ / "epochs.csv").write_text("epoch,step,epoch_time_s,test_accuracy\n" + "\n".join(rows) + "\n")
    ck = results / "checkpoints" / rel / folder
    ck.mkdir(parents=True, exist_ok=True)
    now, age = time.time(), 0.0
    last = len(times)
    for k, gap in enumerate((0.0, *ckpt_gaps)):
        age += gap
        epoch = last - k
        (ck / f"ckpt-epoch{epoch:05d}.pt").write_bytes(b"")
        os.utime(ck / f"ckpt-epoch{epoch:05d}.pt", (now - age,) * 2)
    return ck


def test_running_line_paces_the_run_by_its_median_epoch_not_its_last(tmp_path):
    from debench.status import running_line

    results, rel = tmp_path / "r", ("e", "cifar10", "resnet20", 0)
    # the last epoch ran beside other work (700 s of training, 770 s between its checkpoints): the
    # median epoch (100 s) times the last epoch's wall/training ratio (1.1) sets the pace, 110 s
    epochs(results, rel, [100.0, 90.0, 100.0, 120.0, 700.0], ckpt_gaps=[770.0])
    line = running_line(results, rel, {"iterations": 1000})
    # 1,000 steps planned, 500 done: 5 epochs of 100 steps at 110 s = 9 min 10 s
    assert line == ("running e/cifar10/resnet20/seed0: epoch 5 of 10, step 500/1000, test error 54.75% after "
                    "epoch 5, 110 s per epoch (median of 5, wall), about 9 min left for this run")


def test_a_checkpoint_gap_across_a_restart_does_not_set_the_pace(tmp_path):
    from debench.status import running_line

    results, rel = tmp_path / "r", ("e", "cifar10", "resnet20", 0)
    ck = epochs(results, rel, [9.0, 9.0], ckpt_gaps=[3600.0])  # the two checkpoints an hour apart: a stop
    assert "9 s per epoch (median of 2, training only), about 1 min left" in running_line(
        results, rel, {"iterations": 1000})
    # one checkpoint only: the epochs' training time, and the line says so
    (ck / "ckpt-epoch00001.pt").unlink()
    assert "9 s per epoch (median of 2, training only)" in running_line(results, rel, {"iterations": 1000})
    # a superseded configuration's checkpoint (another hash folder) is not this run's: no gap with it
    stale = ck.parent / "old"
    stale.mkdir()
    (stale / "ckpt-epoch00007.pt").write_bytes(b"")
    os.utime(stale / "ckpt-epoch00007.pt", (time.time() - 3000.0,) * 2)
    assert "9 s per epoch (median of 2, training only)" in running_line(results, rel, {"iterations": 1000})
    assert running_line(results, ("e", "cifar10", "resnet20", 1), {"iterations": 1000}) is None


def test_a_campaign_with_no_finished_run_estimates_its_time_left_from_the_epochs_so_far(tmp_path):
    # the CPU campaign's shape: seed 1 trains (epoch 4 of 10), seed 0 stopped at its epoch-2
    # checkpoint, seed 2 not started; no seed has finished, so no finished run gives a duration
    results = tmp_path / "r"
    runs = [("e", "cifar10", "resnet20", s) for s in range(3)]
    protocols = {run: {"iterations": 1000, "batch_size": 128} for run in runs}
    epochs(results, runs[1], [100.0, 100.0, 100.0, 100.0], ckpt_gaps=[120.0])  # 120 s per epoch, wall
    epochs(results, runs[0], [100.0, 100.0, 100.0], ckpt_gaps=[3600.0])  # log and epochs past its checkpoint
    (results / "checkpoints" / "e" / "cifar10" / "resnet20" / "seed0" / "h" / "ckpt-epoch00003.pt").unlink()
    for seed in (0, 1):
        log = results / "logs" / "train" / "e" / "cifar10" / "resnet20" / f"seed{seed}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text("[resnet20/cifar10/seed1] epoch 4/10\n")
    metrics = str((results / "runs" / "e" / "cifar10" / "resnet20" / "seed1" / "metrics.json").resolve())
    live = Live(trains={metrics: 1}, snakemakes=[2])
    prog = progress(results, runs, "c", live=live, protocols=protocols)
    assert (prog.running, prog.stopped, prog.left) == ([runs[1]], [runs[0]], [runs[2]])
    # at 1.2 s per step: seed 1 has 600 steps left, seed 0 resumes at step 200 (800 left), seed 2 1,000
    assert prog.eta_s == pytest.approx(1.2 * (600 + 800 + 1000))
    assert prog.line() == ("c: 0/3 done, 1 running, 1 stopped, 0 failed, 1 left; about 48 min left "
                           "(3 runs at the pace of the epochs so far, 1 at a time)")
    # without protocols (the steps planned unknown) there is still nothing to estimate from
    assert progress(results, runs, "c", live=live).eta_s is None


def test_a_record_with_an_unknown_status_is_invalid_not_failed_and_says_why(survey, capsys):
    cfg, results = survey
    bad = results / "p" / "runs" / "disc" / "cifar10" / "resnet32" / "seed1" / "metrics.json"
    rec = json.loads(bad.read_text())
    bad.write_text(json.dumps({**rec, "status": "nan_loss"}))  # a status no debench writes
    runs = [("disc", "cifar10", m, s) for m in ("resnet20", "resnet32") for s in range(4)]
    prog = progress(results / "p", runs, "p", live=None)
    assert ("disc", "cifar10", "resnet32", 1) not in prog.failed and len(prog.failed) == 1
    assert [r for r, _ in prog.invalid] == [("disc", "cifar10", "resnet32", 1)]
    assert str(bad) in prog.invalid[0][1] and "column 'status': 'nan_loss' is not one of" in prog.invalid[0][1]
    assert "1 failed, 2 left, 1 invalid record(s);" in prog.line()
    assert main(["status", str(cfg), "--results", str(results)]) == 0
    assert f"invalid record: {bad}, column 'status'" in capsys.readouterr().out


# issue 28.4: status misreports


def test_a_finished_preset_shows_no_time_left(tmp_path):
    results = tmp_path / "results" / "p"
    runs = [("disc", "cifar10", "resnet20", s) for s in range(2)]
    for seed in range(2):
        record(results, "resnet20", seed, bench_s=100)
    prog = progress(results, runs, "p", live=Live())
    assert prog.line() == "p: 2/2 done, 0 running, 0 failed, 0 left; nothing left to run"  # was "about 1 min left"
    record(results, "resnet32", 0, status="diverged")
    prog = progress(results, runs + [("disc", "cifar10", "resnet32", 0)], "p", live=Live())
    assert prog.line().endswith("1 failed, 0 left; nothing left to run (rerun the failed runs to finish)")


def test_status_refuses_a_results_folder_that_does_not_exist(survey, capsys):
    cfg, results = survey
    assert main(["status", str(cfg), "--results", str(results / "nonexistent")]) == 2
    out = capsys.readouterr()
    assert out.out == ""
    assert out.err.startswith(f"debench status: error: results folder {results / 'nonexistent'} does not exist")
    assert len(out.err.strip().splitlines()) == 1
    # an existing results folder where the preset has not started yet is fine: everything is left
    (results.parent / "empty").mkdir()
    assert main(["status", str(cfg), "--results", str(results.parent / "empty")]) == 0
    assert capsys.readouterr().out.startswith("p: 0/8 done, 0 running, 0 failed, 8 left;")


@pytest.mark.parametrize("live", [None, Live(), Live(snakemakes=[1], remote=True)], ids=["no-proc", "local", "cluster"])
def test_a_log_ending_in_an_error_is_failed_not_running(tmp_path, live):
    results = tmp_path / "results" / "p"
    corrupt = ("debench train: error: dataset cache resources/data/npz/cifar10.npz is corrupt: sha256 expected "
               "ab12, found cd34; delete it and rerun")
    job_log(results, "resnet20", 0, age_s=5, text=corrupt + "\n")
    job_log(results, "resnet20", 1, age_s=5, text="[resnet20/cifar10/seed1] epoch 1/2 step 3\nTraceback (most "
            "recent call last):\n  File \"x.py\", line 1, in <module>\nRuntimeError: CUDA error: device-side assert\n")
    runs = [("disc", "cifar10", "resnet20", s) for s in range(2)]
    prog = progress(results, runs, "p", live=live)
    assert prog.failed == runs and not prog.running and not prog.stopped  # was: running for 30 min
    assert prog.why[runs[0]] == f"its log ends with {corrupt!r}"
    assert prog.why[runs[1]] == "its log ends with 'RuntimeError: CUDA error: device-side assert'"


def test_a_traceback_before_later_progress_is_not_an_error(tmp_path):
    results = tmp_path / "results" / "p"
    job_log(results, "resnet20", 0, age_s=5, text="Traceback (most recent call last):\nConnectionError: mlflow down\n"
            "[resnet20/cifar10/seed0] epoch 2/9 step 40\n")
    prog = progress(results, [("disc", "cifar10", "resnet20", 0)], "p", live=None)
    assert len(prog.running) == 1


def test_a_truncated_record_whose_log_says_ok_is_invalid_and_says_so(tmp_path, capsys):
    results = tmp_path / "results" / "p"
    record(results, "resnet20", 0)
    metrics = results / "runs" / "disc" / "cifar10" / "resnet20" / "seed0" / "metrics.json"
    metrics.write_text(metrics.read_text()[:40])  # truncated after the run finished
    job_log(results, "resnet20", 0, age_s=600,
            text="[resnet20/cifar10/seed0] epoch 2/2 step 8\nresnet20 cifar10 seed 0: status ok, test_error 7.5\n")
    prog = progress(results, [("disc", "cifar10", "resnet20", 0)], "p", live=Live())
    assert not prog.failed and [r for r, _ in prog.invalid] == [("disc", "cifar10", "resnet20", 0)]
    why = prog.invalid[0][1]
    assert why.startswith(f"{metrics}: unreadable (")
    assert why.endswith("its job's log ends with 'resnet20 cifar10 seed 0: status ok, test_error 7.5': the run "
                        "finished and its record was damaged since; delete the record to rerun it")


def test_a_run_with_no_live_process_is_stopped_and_resumes_from_its_checkpoint(tmp_path):
    results = tmp_path / "results" / "p"
    run = ("disc", "cifar10", "resnet20", 0)
    job_log(results, "resnet20", 0, age_s=5, text="[resnet20/cifar10/seed0] epoch 4/164 step 1217\n"
            "[resnet20/cifar10/seed0] epoch 4/164 step 1220\n")  # cut mid-epoch by a machine stop
    ck = results / "checkpoints" / "disc" / "cifar10" / "resnet20" / "seed0"
    (ck / "old").mkdir(parents=True)
    (ck / "old" / "ckpt-epoch00009.pt").write_bytes(b"")  # a superseded configuration's
    os.utime(ck / "old" / "ckpt-epoch00009.pt", (time.time() - 3600,) * 2)
    (ck / "h").mkdir()
    for epoch in (2, 3):
        (ck / "h" / f"ckpt-epoch{epoch:05d}.pt").write_bytes(b"")
    # no Snakemake in the workflow folder: stopped, and says how to resume (was: running, a fresh log)
    prog = progress(results, [run], "p", live=Live())
    assert prog.stopped == [run] and not prog.running and not prog.failed
    assert prog.why[run] == (f"no live process; resumes from checkpoint epoch 3; no Snakemake works in "
                             f"{tmp_path.resolve()}: rerun it (--rerun-incomplete) to resume")
    assert "1 running" not in prog.line() and "0 running, 1 stopped, 0 failed, 0 left" in prog.line()
    # a Snakemake of this host that runs its jobs here: the run waits for it, it is not running
    prog = progress(results, [run], "p", live=Live(snakemakes=[4242]))
    assert prog.stopped == [run] and prog.why[run] == "no live process; resumes from checkpoint epoch 3"
    # a Snakemake that submits to a cluster: this host cannot tell, a fresh log counts as running
    assert progress(results, [run], "p", live=Live(snakemakes=[4242], remote=True)).running == [run]


@PROC
def test_live_jobs_reads_train_and_snakemake_processes_of_this_host(tmp_path, spawn):
    work, other = tmp_path / "work", tmp_path / "elsewhere"
    work.mkdir()
    other.mkdir()
    mine = lambda live: [m for m in live.trains if m.startswith(str(tmp_path.resolve()))]  # noqa: E731
    live = live_jobs(work)
    assert mine(live) == [] and live.snakemakes == [] and live.remote is False
    train = spawn.train(Path("results/p/runs/e/d/m/seed0/metrics.json"), cwd=work)  # relative to its folder
    spawn.snakemake(tmp_path, "--cores", "2", "--rerun-incomplete", cwd=work)
    live = live_jobs(work)
    assert mine(live) == [str((work / "results/p/runs/e/d/m/seed0/metrics.json").resolve())]
    assert live.trains[mine(live)[0]] == train.pid
    assert len(live.snakemakes) == 1 and live.remote is False
    spawn.snakemake(tmp_path, "--executor", "slurm", cwd=work)  # a cluster executor: jobs run elsewhere
    spawn.snakemake(tmp_path, "--executor=slurm", cwd=other)  # another workflow folder: not this one's
    live = live_jobs(work)
    assert len(live.snakemakes) == 2 and live.remote is True


def test_a_profile_naming_a_cluster_executor_counts_as_remote(tmp_path):
    from debench.status import _may_run_remotely

    for name, text in (("local", "cores: all\n"), ("slurm", "executor: slurm\njobs: 100\n")):
        (tmp_path / "profiles" / name).mkdir(parents=True)
        (tmp_path / "profiles" / name / "config.yaml").write_text(text)
    assert _may_run_remotely(["snakemake", "--workflow-profile", "profiles/local"], tmp_path) is False
    assert _may_run_remotely(["snakemake", "--profile", "profiles/slurm"], tmp_path) is True
    assert _may_run_remotely(["snakemake", "--cluster", "sbatch"], tmp_path) is True
    assert _may_run_remotely(["snakemake", "--profile", "profiles/missing"], tmp_path) is True  # unreadable


def test_resumable_lists_unfinished_runs_with_a_checkpoint_furthest_first(survey, capsys):
    """A restarted campaign resumes its partly trained seeds first (`--resumable` feeds the campaign
    script's `snakemake --prioritize`): on a restart Snakemake alone started seed 0 afresh while
    seed 1 had a checkpoint at epoch 55."""
    cfg, results = survey
    p = results / "p"
    for model, seed, epoch in (("resnet32", 3, 7), ("resnet20", 2, 12), ("resnet20", 0, 99)):
        ck = p / "checkpoints" / "disc" / "cifar10" / model / f"seed{seed}" / "h"
        ck.mkdir(parents=True)
        (ck / f"ckpt-epoch{epoch:05d}.pt").write_bytes(b"")  # resnet20 seed 0 is finished: not listed
    assert main(["status", str(cfg), "--results", str(results), "--resumable"]) == 0
    run = lambda m, s: str(p / "runs" / "disc" / "cifar10" / m / f"seed{s}" / "metrics.json")  # noqa: E731
    assert capsys.readouterr().out.splitlines() == [run("resnet20", 2), run("resnet32", 3)]


def test_the_campaign_script_prioritizes_the_resumable_runs():
    script = (Path(__file__).parents[1] / "scripts" / "cpu_campaign.sh").read_text()
    assert 'status "$preset" --resumable' in script and '--prioritize "${resume[@]}")' in script


@PROC
def test_the_campaign_script_takes_a_zombie_pid_for_a_dead_campaign(tmp_path):
    """A campaign killed by its parent's stop stays a zombie until reaped; `kill -0` succeeds on it,
    so the script's pid-file check said "already running" and refused to restart (seen on a restart)."""
    script = (Path(__file__).parents[1] / "scripts" / "cpu_campaign.sh").read_text()
    func = script[script.index("alive() {"):script.index("}\n", script.index("alive() {")) + 2]
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])
    while Path(f"/proc/{zombie.pid}/stat").read_text().split(") ")[1][0] != "Z":  # exited, not yet reaped
        time.sleep(0.01)
    live = started([sys.executable, "-c", "import time; time.sleep(60)", "snakemake", "-s", "Snakefile"])
    try:
        def alive(pid):
            return subprocess.run(["bash", "-c", func + f'alive {pid}']).returncode == 0

        assert alive(live.pid) and not alive(zombie.pid)
    finally:
        live.kill()
        live.wait()
        zombie.wait()


@PROC
def test_the_campaign_script_takes_a_pid_reused_by_another_program_for_a_dead_campaign(tmp_path):
    """After a reboot of the same machine the pid in results/<preset>/campaign.pid can belong to an
    unrelated live program; the script took it for the campaign, said "already running" and did not
    resume."""
    repo, run = campaign_repo(tmp_path)
    other = started([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (repo / "results" / "p").mkdir(parents=True)
        (repo / "results" / "p" / "campaign.pid").write_text(f"{other.pid}\n")
        proc, calls = run()
        assert proc.returncode == 0 and "already running" not in proc.stderr and calls
        # a live campaign's pid is still refused: here the Snakemake it became (exec)
        campaign = started([sys.executable, "-c", "import time; time.sleep(60)", "snakemake", "--cores", "2"])
        try:
            (repo / "results" / "p" / "campaign.pid").write_text(f"{campaign.pid}\n")
            proc, _ = run()
            assert proc.returncode == 1 and f"p already running (pid {campaign.pid})" in proc.stderr
        finally:
            campaign.kill()
            campaign.wait()
    finally:
        other.kill()
        other.wait()


def runs_csv(path, rows):
    """A run table as `debench merge-runs` writes it (only the columns status reads, plus one more)."""
    path.write_text("experiment,dataset,model,seed,status,test_error\n"
                    + "".join(f"disc,cifar10,{m},{s},{st},8.5\n" for m, s, st in rows))
    return path


def test_runs_in_the_published_table_count_as_published_and_are_not_trained_again(survey, capsys):
    """A campaign on a new machine lost its finished seeds' records but not their rows in
    results/published/runs.csv: status counted them as left and the campaign trained them again."""
    cfg, results = survey
    p = results / "p"
    table = runs_csv(results.parent / "runs.csv", [("resnet20", 3, "ok"), ("resnet32", 3, "diverged"),
                                                   ("resnet20", 0, "ok")])  # seed 0 is also finished here
    (p / "PUBLISHED").write_text("runs.csv\n")  # relative to the workflow folder above results/
    assert main(["status", str(cfg), "--results", str(results)]) == 0
    line = capsys.readouterr().out.splitlines()[0]
    assert line.startswith("p: 3/8 done, 1 published (") and f"{table}), " in line and " 1 left;" in line
    assert main(["status", str(cfg), "--results", str(results), "--to-train"]) == 0
    run = lambda m, s: str(p / "runs" / "disc" / "cifar10" / m / f"seed{s}" / "metrics.json")  # noqa: E731
    # unfinished here and not published ok: resnet32 seed 3's published row failed, so it trains
    assert capsys.readouterr().out.splitlines() == [run("resnet20", 2), run("resnet32", 2), run("resnet32", 3)]
    table.unlink()
    assert main(["status", str(cfg), "--results", str(results)]) == 2
    assert f"{p / 'PUBLISHED'} names {table.resolve()}, which does not exist" in capsys.readouterr().err


def test_published_commit_names_the_code_the_published_runs_of_the_preset_ran(survey, capsys):
    """What a campaign restarted on a new machine pins: the commit its published seeds ran at, or an
    error when no one commit holds their code."""
    cfg, results = survey
    table = results.parent / "runs.csv"

    def rows(*rs):  # (experiment, model, seed, status, commit, dirty)
        table.write_text("experiment,dataset,model,seed,status,provenance.git_commit,provenance.git_dirty\n"
                         + "".join(f"{e},cifar10,{m},{s},{st},{c},{d}\n" for e, m, s, st, c, d in rs))

    ask = lambda: main(["status", str(cfg), "--results", str(results), "--published", str(table),  # noqa: E731
                        "--published-commit"])
    rows(("disc", "resnet20", 0, "ok", "aaa1", False), ("disc", "resnet20", 1, "ok", "aaa1", False),
         ("disc", "resnet20", 2, "diverged", "bbb2", False), ("other", "resnet20", 3, "ok", "ccc3", False))
    assert ask() == 0 and capsys.readouterr().out == "aaa1\n"  # failed rows and other presets' runs do not count
    rows(("other", "resnet20", 0, "ok", "ccc3", False))
    assert ask() == 0 and capsys.readouterr().out == ""  # none of this preset: nothing to pin
    rows(("disc", "resnet20", 0, "ok", "aaa1", False), ("disc", "resnet32", 1, "ok", "bbb2", False))
    assert ask() == 2 and "do not name one commit (resnet20 seed 0 at aaa1, resnet32 seed 1 at bbb2)" in \
        capsys.readouterr().err
    rows(("disc", "resnet20", 0, "ok", "aaa1", True))
    assert ask() == 2 and "resnet20 seed 0 ran on a tree with uncommitted changes" in capsys.readouterr().err
    assert main(["status", str(cfg), "--results", str(results), "--published-commit"]) == 2
    assert "--published-commit needs a published table" in capsys.readouterr().err


def campaign_repo(tmp_path, resumable="", to_train=""):
    """A git repository holding the campaign script, a preset, a stand-in debench that answers
    `status --resumable` and `--to-train` with the lines given, and a stand-in snakemake that
    records each command line it gets (one argument per line, calls separated by '=')."""
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    script = Path(__file__).parents[1] / "scripts" / "cpu_campaign.sh"
    (repo / "scripts" / "cpu_campaign.sh").write_text(script.read_text())
    (repo / "config").mkdir()
    (repo / "config" / "p.yaml").write_text("preset: p\n")
    (repo / "Snakefile").write_text("")
    (repo / "src").mkdir()  # the script checks out the pinned commit once, until it has src/
    (repo / "src" / "x.py").write_text("")
    bin_ = repo / ".venv" / "bin"
    bin_.mkdir(parents=True)
    (bin_ / "debench").write_text(
        "#!/usr/bin/env bash\ncase \"$*\" in\n"
        f"  *--resumable*) printf '{resumable}' ;;\n  *--to-train*) printf '{to_train}' ;;\nesac\n")
    (repo / "snakemake").write_text("#!/usr/bin/env bash\nprintf '%s\\n' \"$@\" '=' >> \"$(dirname \"$0\")/calls\"\n")
    for f in (bin_ / "debench", repo / "snakemake", repo / "scripts" / "cpu_campaign.sh"):
        f.chmod(0o755)
    (repo / ".gitignore").write_text(".venv/\n.campaign/\nresults/\nsnakemake\ncalls\n")
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "campaign"], check=True)

    def run(*args, **env):
        proc = subprocess.run(["bash", str(repo / "scripts" / "cpu_campaign.sh"), *args], capture_output=True,
                              text=True, env={**os.environ, "CAMPAIGN_PRESET": "p", "NICE": "0",
                                              "SNAKEMAKE": str(repo / "snakemake"),
                                              "XDG_STATE_HOME": str(tmp_path / "state"), **env})
        calls = (repo / "calls").read_text().split("\n=\n") if (repo / "calls").exists() else []
        return proc, [c.split("\n") for c in calls if c.strip()]

    return repo, run


def test_the_campaign_script_trains_only_the_runs_the_published_table_lacks(tmp_path):
    done = "results/p/runs/s1/metrics.json"
    repo, run = campaign_repo(tmp_path, resumable=done + "\\n", to_train=f"{done}\\nresults/p/runs/s2/metrics.json\\n")
    (repo / "pub.csv").write_text("experiment\n")
    proc, calls = run(CAMPAIGN_PUBLISHED="pub.csv")
    assert proc.returncode == 0, proc.stderr
    assert (repo / "results" / "p" / "PUBLISHED").read_text() == "pub.csv\n"
    # the targets follow `--`: after --prioritize (which takes several values) they would be its values
    assert calls[-1][-5:] == ["--prioritize", done, "--", done, "results/p/runs/s2/metrics.json"]
    # a restart without the variable keeps the choice (results/p/PUBLISHED)
    (repo / "calls").unlink()
    proc, calls = run()
    assert proc.returncode == 0 and calls[-1][-3:] == ["--", done, "results/p/runs/s2/metrics.json"]


def test_the_campaign_script_gives_its_own_targets_ahead_of_prioritize(tmp_path):
    """`scripts/cpu_campaign.sh TARGET` on a restart put TARGET after `--prioritize RUN`, so Snakemake
    read it as a second run to prioritize and trained every run of the preset."""
    resume = "results/p/runs/s1/metrics.json"
    _, run = campaign_repo(tmp_path, resumable=resume + "\\n")
    proc, calls = run("results/p/runs/s2/metrics.json")
    assert proc.returncode == 0, proc.stderr
    argv = calls[-1]
    assert argv[0] == "results/p/runs/s2/metrics.json" and argv[-2:] == ["--prioritize", resume]


def test_the_campaign_script_stops_when_nothing_is_left_or_the_table_is_missing(tmp_path):
    repo, run = campaign_repo(tmp_path, to_train="")
    proc, calls = run(CAMPAIGN_PUBLISHED="missing.csv")
    assert proc.returncode == 2 and "CAMPAIGN_PUBLISHED=missing.csv: no such file" in proc.stderr and not calls
    (repo / "pub.csv").write_text("experiment\n")
    proc, calls = run(CAMPAIGN_PUBLISHED="pub.csv")
    assert proc.returncode == 0 and "nothing to train" in proc.stdout
    assert not calls and not (repo / "results" / "p" / "campaign.pid").exists()  # no Snakemake started


def test_a_start_on_a_new_machine_pins_the_published_runs_commit_and_skips_them(tmp_path):
    """On a new machine (no results/<preset>/COMMIT) a plain `make cpu-campaign` pinned the current
    commit and trained every seed again, the published ones included, at other code than theirs."""
    todo = "results/p/runs/s2/metrics.json"
    repo, run = campaign_repo(tmp_path, to_train=todo + "\\n")
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    published = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    (repo / "src" / "x.py").write_text("later = True\n")
    subprocess.run([*git, "commit", "-qam", "later"], check=True)
    stand_in = repo / ".venv" / "bin" / "debench"  # answers --published-commit with the published runs' commit
    stand_in.write_text(stand_in.read_text().replace("esac", f"  *--published-commit*) echo {published} ;;\nesac"))
    (repo / "results" / "published").mkdir(parents=True)
    (repo / "results" / "published" / "runs.csv").write_text("experiment\n")
    proc, calls = run()
    assert proc.returncode == 0, proc.stderr
    assert (repo / "results" / "p" / "COMMIT").read_text().strip() == published
    assert (repo / "results" / "p" / "PUBLISHED").read_text() == "results/published/runs.csv\n"
    assert f"trained at {published[:12]}; pinning that commit" in proc.stdout
    assert calls[-1][-2:] == ["--", todo] and str(repo / ".campaign" / published / "Snakefile") in calls[-1]


def test_the_campaign_keeps_its_state_outside_the_checkout_and_a_new_checkout_resumes_it(tmp_path):
    """A session that got its machine back but a new checkout found no results/<preset>/ (seen: the
    eleventh session; seed 2's 127 epochs of checkpoints were gone with the old working folder), so
    the campaign restarted its seed from iteration 0 and pinned another commit."""
    repo, run = campaign_repo(tmp_path)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    pinned = subprocess.run([*git, "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                            check=True).stdout.strip()
    proc, _ = run()
    assert proc.returncode == 0, proc.stderr
    state = tmp_path / "state" / f"debench{repo}" / "results" / "p"
    out = repo / "results" / "p"
    assert out.is_symlink() and out.resolve() == state.resolve() and (state / "COMMIT").read_text().strip() == pinned
    assert f"p keeps its state in {state} (results/p links there)" in proc.stdout
    # debench status knows the script's rule (its note on a checkout that lost the link)
    assert campaign_state(out, {"XDG_STATE_HOME": str(tmp_path / "state")}) == Path(os.readlink(out))
    assert campaign_state(out, {"HOME": "/h"}) == Path(f"/h/.local/state/debench{repo}/results/p")
    (out / "checkpoints").mkdir()
    (out / "checkpoints" / "ckpt-epoch00127.pt").write_bytes(b"127 epochs")
    # the working folder is recreated from the remote at a later commit; ignored files do not travel
    (repo / "src" / "x.py").write_text("later = True\n")
    subprocess.run([*git, "-C", str(repo), "commit", "-qam", "later"], check=True)
    old = tmp_path / "old"
    repo.rename(old)
    subprocess.run([*git, "clone", "-q", str(old), str(repo)], check=True)
    (repo / ".venv").mkdir()
    (old / ".venv" / "bin").rename(repo / ".venv" / "bin")
    (old / "snakemake").rename(repo / "snakemake")
    proc, calls = run()
    assert proc.returncode == 0, proc.stderr
    assert out.is_symlink() and (out / "checkpoints" / "ckpt-epoch00127.pt").read_bytes() == b"127 epochs"
    assert (out / "COMMIT").read_text().strip() == pinned  # the seeds go on at the code they started with
    assert str(repo / ".campaign" / pinned / "Snakefile") in calls[-1]


def test_a_campaign_folder_in_the_checkout_moves_out_once_and_nothing_is_overwritten(tmp_path):
    repo, run = campaign_repo(tmp_path)
    out, state = repo / "results" / "p", tmp_path / "elsewhere" / "p"
    (out / "checkpoints").mkdir(parents=True)  # a campaign started by the script before it kept state outside
    (out / "checkpoints" / "ckpt-epoch00009.pt").write_bytes(b"9")
    proc, _ = run(CAMPAIGN_STATE=str(state))
    assert proc.returncode == 0, proc.stderr
    assert f"moved results/p to {state}" in proc.stdout
    assert out.is_symlink() and (state / "checkpoints" / "ckpt-epoch00009.pt").read_bytes() == b"9"
    # a folder in the checkout again while the state folder holds a campaign: refused, nothing moved
    out.unlink()
    (out / "checkpoints").mkdir(parents=True)
    (out / "checkpoints" / "ckpt-epoch00001.pt").write_bytes(b"1")
    proc, calls = run(CAMPAIGN_STATE=str(state))
    assert proc.returncode == 2 and f"both results/p and {state} hold p's state" in proc.stderr
    assert (out / "checkpoints" / "ckpt-epoch00001.pt").read_bytes() == b"1"
    assert (state / "checkpoints" / "ckpt-epoch00009.pt").read_bytes() == b"9"
    # CAMPAIGN_STATE=none keeps the folder in the checkout
    proc, _ = run(CAMPAIGN_STATE="none")
    assert proc.returncode == 0 and not out.is_symlink() and (out / "COMMIT").is_file()
    proc, _ = run(CAMPAIGN_STATE="relative/p")
    assert proc.returncode == 2 and "CAMPAIGN_STATE=relative/p: give an absolute path" in proc.stderr


def test_the_campaign_in_the_background_checks_in_the_foreground_and_logs_to_its_state(tmp_path):
    """`make cpu-campaign` opened results/<preset>/campaign.log itself, so an error of the script was
    only in the log, and the folder existed in the checkout before the script could link it."""
    repo, run = campaign_repo(tmp_path, to_train="results/p/runs/s2/metrics.json\\n")
    proc, calls = run(CAMPAIGN_BACKGROUND="1", CAMPAIGN_PUBLISHED="missing.csv")
    assert proc.returncode == 2 and "CAMPAIGN_PUBLISHED=missing.csv: no such file" in proc.stderr  # on the terminal
    (repo / "pub.csv").write_text("experiment\n")
    proc, calls = run(CAMPAIGN_BACKGROUND="1", CAMPAIGN_PUBLISHED="pub.csv")
    assert proc.returncode == 0, proc.stderr
    pid = int(proc.stdout.split("started (pid ")[1].split(")")[0])
    assert (repo / "results" / "p" / "campaign.pid").read_text().strip() == str(pid)
    deadline = time.monotonic() + 30
    while len(calls) < 2 and time.monotonic() < deadline:  # --unlock, then the detached Snakemake's call
        time.sleep(0.05)
        calls = [c.split("\n") for c in (repo / "calls").read_text().split("\n=\n") if c.strip()]
    assert len(calls) == 2 and calls[-1][-2:] == ["--", "results/p/runs/s2/metrics.json"]
    log = (repo / "results" / "p" / "campaign.log").read_text()
    assert "training the 1 run(s) not finished in pub.csv" in log and (repo / "results" / "p").is_symlink()


def test_status_reads_a_results_folder_that_links_to_the_campaign_state(survey, capsys, spawn):
    """results/<preset> linking outside the checkout (the campaign script's state): status resolved
    the link before taking the workflow folder, so PUBLISHED's relative table was looked for beside
    the state folder ("... which does not exist") and the Snakemake working in the checkout was
    not seen."""
    cfg, results = survey
    state = results.parent / "home" / ".local" / "state" / "debench" / "p"
    state.parent.mkdir(parents=True)
    (results / "p").rename(state)
    (results / "p").symlink_to(state)
    runs_csv(results.parent / "runs.csv", [("resnet20", 3, "ok")])
    (state / "PUBLISHED").write_text("runs.csv\n")  # relative to the workflow folder above results/
    spawn.train(Path("results/p/runs/disc/cifar10/resnet20/seed2/metrics.json"), cwd=results.parent)
    assert main(["status", str(cfg), "--results", str(results)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("p: 3/8 done, 1 published (") and " 1 running," in out[0]


def test_status_points_a_recreated_checkout_to_the_campaign_state_it_lost(survey, capsys, monkeypatch):
    cfg, results = survey
    monkeypatch.setenv("XDG_STATE_HOME", str(results.parent / "state"))
    state = campaign_state(results / "p")
    state.parent.mkdir(parents=True)
    (results / "p").rename(state)  # the checkout lost its link; the state folder is still there
    assert main(["status", str(cfg), "--results", str(results)]) == 0
    err = capsys.readouterr().err
    assert f"results/p does not exist here, but {state} holds this preset's campaign state" in err
    assert "`make cpu-campaign CAMPAIGN=p` links it back" in err


def test_a_link_left_by_a_restored_checkout_on_a_new_machine_gets_a_fresh_state_folder(tmp_path):
    repo, run = campaign_repo(tmp_path)
    state = tmp_path / "state" / f"debench{repo}" / "results" / "p"
    (repo / "results").mkdir()
    (repo / "results" / "p").symlink_to(state)  # ignored files came back, the machine (and its state) did not
    proc, calls = run()
    assert proc.returncode == 0, proc.stderr
    assert (state / "COMMIT").is_file() and calls
