"""The fork server (debench.forkserver): a job forked from it is the job its own process runs.

Fast tests drive a server in this process (no preloading, no fork: every request they send is
declined). The slow ones start real servers: the side-by-side comparison of records and process
state, the stale-code reproduction of issue 24, and the fault tests (a killed job, a killed or
frozen server).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from debench import forkserver
from debench.forkserver import client as fs_client
from debench.forkserver import server as fs_server
from tests.conftest import ROOT

DEBENCH = [sys.executable, "-m", "debench.cli"]
# what a process measures about itself rather than computes: left out of the comparisons
TIMING = re.compile(r"(^|_)time(_|$)|_s$|throughput")
PROCESS = {"date_utc", "process_peak_rss_mb"}  # provenance of the process, not of the result

PLUGIN = '''
import json, os, random, sys, tempfile
import numpy, torch
from debench.models.discrete.resnet import CifarResNet
from debench.registry import register_model


@register_model("fs_probe_resnet8", family="discrete", paper="(test plugin)", scheme="forward Euler",
                evals_per_forward=4)
def fs_probe_resnet8(num_classes: int = 10, in_channels: int = 3):
    return CifarResNet(8, num_classes, in_channels)


if os.environ.get("FS_PROBE"):  # what this process started with, as the job's code sees it
    umask = os.umask(0)
    os.umask(umask)
    with open(os.environ["FS_PROBE"], "w") as f:
        json.dump({"hash": hash("debench"), "tempdir": tempfile.gettempdir(), "sys_path": sys.path,
                   "cwd": os.getcwd(), "umask": umask, "random": random.random(),
                   "numpy": float(numpy.random.random()), "torch_seed": torch.initial_seed(),
                   "torch": float(torch.rand(1)), "threads": torch.get_num_threads(),
                   "interop": torch.get_num_interop_threads(), "mark": os.environ.get("FS_MARK")}, f)
'''


# ---- helpers ------------------------------------------------------------------------------------

def spec(cache: Path, out: Path, iterations: int = 2, model: str = "resnet20", plugins: tuple = ()) -> str:
    return json.dumps({
        "experiment": "fs", "preset": "test", "table": "discrete", "mode": "paper", "seed": 3,
        "model": model, "dataset": "cifar10", "model_args": {}, "data": {"cache": str(cache)},
        "protocol": {"batch_size": 16, "iterations": iterations, "eval_batch_size": 16, "checkpoint_every": 1,
                     "optimizer": "sgd", "lr": 0.1, "momentum": 0.9},
        "runtime": {"device": "cpu", "channels_last": True, "amp": "off", "compile": False},
        "tracking": {"enabled": False}, "plugins": list(plugins),
        "paths": {"metrics": str(out / "metrics.json"), "checkpoints": str(out / "ckpt")},
    })


def train(spec_json: str, env: dict | None, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([*DEBENCH, "train", "--spec", spec_json, "--threads", "1"], env=env,
                          capture_output=True, text=True, timeout=600, **kw)


def start_job(spec_json: str, env: dict) -> subprocess.Popen:
    return subprocess.Popen([*DEBENCH, "train", "--spec", spec_json, "--threads", "1"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def forked_pids(log: Path) -> list[int]:
    return [int(p) for p in re.findall(r"pid (\d+): debench train", log.read_text())] if log.exists() else []


def wait_for(condition, what: str, timeout: float = 180.0, proc: subprocess.Popen | None = None):
    deadline = time.time() + timeout
    while not (value := condition()):
        assert time.time() < deadline, f"timed out waiting for {what}"
        assert proc is None or proc.poll() is None, f"the job ended while waiting for {what}: {proc.stderr.read()}"
        time.sleep(0.05)
    return value


def running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def comparable(record: dict, *also: str) -> dict:
    """A record without what the process measures about itself (timings, date, its RSS)."""
    out = {k: v for k, v in record.items() if not TIMING.search(k) and k not in also}
    out["provenance"] = {k: v for k, v in record["provenance"].items() if k not in PROCESS}
    return out


def own_env(env: dict, **extra: str) -> dict:
    """``env`` without the server's address (a process of its own), plus ``extra``."""
    return {**{k: v for k, v in env.items() if k != forkserver.ENV}, **extra}


def start_server(log: Path, **env: str):
    """A real server whose environment has ``env`` too; returns (process, the clients' environment)."""
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        proc = forkserver.start(log)
        client_env = dict(os.environ)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return proc, client_env


@pytest.fixture(scope="module")
def src_copy(tmp_path_factory):
    """A copy of debench that servers and jobs import (PYTHONPATH): edits to the working tree while
    the tests run (its code fingerprint changing) then leave these jobs alone."""
    return copy_debench(tmp_path_factory.mktemp("repo"))


def copy_debench(root: Path) -> Path:
    """``root/src/debench``, a copy of this checkout's package, beside a link to its workflow/ (schemas)."""
    shutil.copytree(Path(fs_client.__file__).parents[1], root / "src" / "debench",
                    ignore=shutil.ignore_patterns("__pycache__"))
    (root / "workflow").symlink_to(ROOT / "workflow")
    return root / "src"


@pytest.fixture(scope="module")
def plugin_dir(tmp_path_factory):
    """A folder holding a plugin found only through PYTHONPATH (registers fs_probe_resnet8, writes a probe)."""
    folder = tmp_path_factory.mktemp("plugins")
    (folder / "fsprobe.py").write_text(PLUGIN)
    return folder


@pytest.fixture(scope="module")
def server(tmp_path_factory, src_copy):
    """A running fork server (started with PYTHONHASHSEED=0) and the environment that points clients to it."""
    log = tmp_path_factory.mktemp("fs") / "fork_server.log"
    proc, env = start_server(log, PYTHONHASHSEED="0", PYTHONPATH=str(src_copy))
    yield proc, env, log
    forkserver.stop(proc)
    assert proc.poll() is not None


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    from debench.data.cache import prepare_dataset

    path = tmp_path_factory.mktemp("data") / "cifar10.npz"
    prepare_dataset("cifar10", "synthetic", path, train_size=32, test_size=16, seed=0)
    return path


# ---- a server driven in this process: requests, refusals, robustness ----------------------------

@pytest.fixture
def local_server(tmp_path):
    """A server object on a socket in a private folder, with the state preloading would give it."""
    import numpy  # noqa: F401  (preloaded by a real server)
    import torch  # noqa: F401

    folder = tmp_path / "debench-fs-test"
    folder.mkdir(mode=0o700)
    srv = fs_server._Server(folder / "sock", None, 60.0)
    srv.code, srv.settings = fs_client.loaded_code(), fs_server.start_settings(dict(os.environ))
    srv.affinity, srv.module_roots = sorted(os.sched_getaffinity(0)), fs_server._module_roots()
    yield srv
    srv._shutdown()


def send(path: Path, payload: bytes, fds: bool = True) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(str(path))
    head = struct.pack("!I", len(payload))
    if fds:
        socket.send_fds(sock, [head], [0, 1, 2])
    else:
        sock.sendall(head)
    sock.sendall(payload)
    return sock


def answer(srv, sock: socket.socket, steps: int = 20) -> tuple[bytes, str]:
    """Step the server until ``sock`` has an answer: (tag, message)."""
    sock.setblocking(False)
    data = b""
    for _ in range(steps):
        srv.step(timeout=0.05)
        try:
            chunk = sock.recv(4096)
        except BlockingIOError:
            continue
        data += chunk
        if not chunk or len(data) >= 5 and len(data) >= 5 + struct.unpack("!I", data[1:5])[0]:
            break
    sock.close()
    return data[:1], data[5:].decode(errors="replace")


def good_request(**change) -> dict:
    return {**fs_client.request(["train", "--spec", "{}"]), **change}


@pytest.mark.parametrize(("payload", "says"), [
    (lambda: b"not json", "not JSON"),
    (lambda: b"", "not JSON"),
    (lambda: b"[1, 2]", "not a JSON object"),
    (lambda: json.dumps({k: v for k, v in good_request().items() if k != "argv"}).encode(), "argv"),
    (lambda: json.dumps(good_request(argv="train")).encode(), "argv"),
    (lambda: json.dumps(good_request(argv=["status", "survey"])).encode(), "serves only `debench train`"),
    (lambda: json.dumps(good_request(env=["PATH"])).encode(), "env is missing or malformed"),
    (lambda: json.dumps(good_request(cwd="relative")).encode(), "cwd is missing or malformed"),
    (lambda: json.dumps(good_request(umask=-1)).encode(), "umask is missing or malformed"),
], ids=["garbage", "empty", "list", "no-argv", "argv-string", "not-train", "env-list", "relative-cwd", "bad-umask"])
def test_a_malformed_request_is_answered_and_the_server_goes_on(local_server, payload, says):
    tag, message = answer(local_server, send(local_server.path, payload()))
    assert tag == b"-" and says in message, message
    # still serving: the next request is read and judged (another code: it runs in its own process)
    tag, message = answer(local_server, send(local_server.path, json.dumps(good_request(code="other")).encode()))
    assert tag == b"-" and "its code (other" in message, message


def test_a_request_without_the_standard_streams_is_declined(local_server):
    tag, message = answer(local_server, send(local_server.path, json.dumps(good_request()).encode(), fds=False))
    assert tag == b"-" and "3 standard streams, got 0" in message


def test_a_stalled_connection_never_blocks_the_next(local_server, monkeypatch):
    stalled = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stalled.connect(str(local_server.path))  # connects and sends nothing
    started = time.monotonic()
    tag, message = answer(local_server, send(local_server.path, b"[]"))
    assert tag == b"-" and time.monotonic() - started < 2.0
    monkeypatch.setattr(fs_server, "REQUEST_TIMEOUT_S", 0.0)
    for p in local_server.pending.values():
        p.deadline = 0.0
    tag, message = answer(local_server, stalled)  # dropped, with a word, once its time is up
    assert tag == b"-" and "not complete within" in message and not local_server.pending


def test_only_its_owner_is_served(local_server, monkeypatch):
    monkeypatch.setattr(fs_server.os, "getuid", lambda: os.geteuid() + 1)  # the server's user is someone else
    sock = send(local_server.path, json.dumps(good_request()).encode())
    tag, message = answer(local_server, sock)
    assert tag == b"-" and f"serves only uid {os.geteuid() + 1}" in message and not local_server.pending


def test_a_job_that_would_start_otherwise_runs_in_its_own_process(local_server, tmp_path):
    judge = local_server._runs_elsewhere
    assert judge(good_request()) is None
    assert "its code" in judge(good_request(code="0" * 16))
    env = dict(os.environ)
    for key, value in (("PYTHONHASHSEED", "1234"), ("OMP_NUM_THREADS", "7"), ("MALLOC_ARENA_MAX", "2"),
                       ("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")):
        assert key in judge(good_request(env={**env, key: value})), key
    for key in ("PYTHONPATH", "TMPDIR", "CUDA_VISIBLE_DEVICES", "FS_MARK"):  # the child takes these
        assert judge(good_request(env={**env, key: str(tmp_path)})) is None, key
    assert "affinity" in judge(good_request(affinity=[0, 1, 2, 3, 4, 5, 6, 7, 8, 9][:len(os.sched_getaffinity(0)) + 1]))
    (tmp_path / "numpy.py").write_text("")  # a job whose path puts another numpy first
    assert "holds preloaded modules: numpy" in judge(good_request(sys_path=[str(tmp_path), *sys.path]))
    (tmp_path / "numpy.py").unlink()
    assert judge(good_request(sys_path=[str(tmp_path), *sys.path])) is None  # a plugin folder: fine
    root = local_server.module_roots["torch"]
    assert "lacks" in judge(good_request(sys_path=[p for p in sys.path if p != root]))


def test_the_code_fingerprint_follows_debench_files(tmp_path, monkeypatch):
    import importlib.util

    copy = tmp_path / "debench"
    shutil.copytree(Path(fs_client.__file__).parents[1], copy, ignore=shutil.ignore_patterns("__pycache__"))
    spec = importlib.util.spec_from_file_location("debench", copy / "__init__.py",
                                                  submodule_search_locations=[str(copy)])
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: spec)
    before = fs_client.code_fingerprint()
    assert fs_client.code_fingerprint() == before
    protocol = copy / "train" / "protocol.py"
    protocol.write_text(protocol.read_text().replace("crop_padding: int = 4", "crop_padding: int = 0"))
    assert fs_client.code_fingerprint() != before


def test_the_start_settings_are_those_read_at_interpreter_start():
    env = {"PYTHONHASHSEED": "0", "PYTHONMALLOC": "malloc", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "LD_PRELOAD": "x", "MALLOC_CONF": "y", "TORCHINDUCTOR_CACHE_DIR": "z", "LC_ALL": "C",
           "PYTHONPATH": "p", "TMPDIR": "/t", "PATH": "/bin", "CUDA_VISIBLE_DEVICES": "0", "HOME": "/h"}
    assert set(fs_server.start_settings(env)) == {"PYTHONHASHSEED", "PYTHONMALLOC", "OMP_NUM_THREADS",
                                                  "MKL_NUM_THREADS", "LD_PRELOAD", "MALLOC_CONF",
                                                  "TORCHINDUCTOR_CACHE_DIR", "LC_ALL"}


def test_the_socket_lives_in_a_private_folder_that_stop_removes(tmp_path):
    proc = forkserver.start(tmp_path / "fs.log", parent_pid=os.getpid())
    os.environ.pop(forkserver.ENV)
    try:
        folder = Path(proc.args[proc.args.index("--socket") + 1]).parent
        st = folder.stat()
        assert st.st_mode & 0o777 == 0o700 and st.st_uid == os.geteuid()
    finally:
        forkserver.stop(proc)
    assert not folder.exists()


def test_a_cpu_run_records_no_process_rss_as_model_memory():
    import torch

    from debench.track import provenance
    from debench.train.measure import peak_memory_bytes, peak_memory_mb

    assert peak_memory_bytes(torch.device("cpu")) is None and peak_memory_mb(torch.device("cpu")) is None
    info = provenance.collect("cpu")
    assert info["process_peak_rss_mb"] > 0  # the process's figure, labelled as such
    assert info["debench_code"] == fs_client.loaded_code() and re.fullmatch(r"[0-9a-f]{16}", info["debench_code"])


# ---- real servers: the same job, the same record -------------------------------------------------

@pytest.mark.slow  # the server imports torch and MLflow once: ~4 s on 2 quiet cores
def test_side_by_side_a_forked_job_records_what_its_own_process_records(server, cache, plugin_dir, tmp_path):
    """Two models, one a plugin found only through the job's PYTHONPATH; the job in a folder, with
    a TMPDIR and a umask of its own: every field of metrics.json but timings, and the process
    state the job's code sees, are the same with the server on and off."""
    _, env, log = server
    work, tmp = tmp_path / "work", tmp_path / "tmp"
    work.mkdir()
    tmp.mkdir()
    job_env = {**env, "PYTHONPATH": f"{env['PYTHONPATH']}{os.pathsep}{plugin_dir}", "TMPDIR": str(tmp),
               "FS_MARK": "job"}
    probes = {}
    for model in ("resnet20", "fs_probe_resnet8"):
        records = {}
        for mode, e in (("own", own_env(job_env)), ("forked", job_env)):
            before = len(forked_pids(log))
            out = tmp_path / mode / model
            e = {**e, "FS_PROBE": str(tmp_path / f"{mode}-{model}.json")}
            run = train(spec(cache, out, model=model, plugins=("fsprobe",)), e, cwd=work,
                        preexec_fn=lambda: os.umask(0o027))
            assert run.returncode == 0, run.stderr[-3000:]
            assert len(forked_pids(log)) == before + (mode == "forked"), (mode, run.stderr[-2000:])
            assert "status ok" in run.stderr  # the child writes to the client's streams: the job's log
            records[mode] = json.loads((out / "metrics.json").read_text())
            probes[mode, model] = json.loads(Path(e["FS_PROBE"]).read_text())
        own, forked = (comparable(records[m]) for m in ("own", "forked"))
        assert forked == own, {k: (own.get(k), forked.get(k)) for k in set(own) | set(forked)
                               if own.get(k) != forked.get(k)}
        assert records["own"]["peak_memory_mb"] is None  # CPU: no process RSS posing as the model's memory
    for model in ("resnet20", "fs_probe_resnet8"):
        own, forked = probes["own", model], probes["forked", model]
        assert forked["tempdir"] == str(tmp) and forked["cwd"] == str(work) and forked["umask"] == 0o027
        same = ("hash", "tempdir", "sys_path", "cwd", "umask", "threads", "interop", "mark")
        assert {k: forked[k] for k in same} == {k: own[k] for k in same}
    # every global generator is seeded afresh in each child, as in each process (torch 2.14 seeds at start)
    a, b = probes["forked", "resnet20"], probes["forked", "fs_probe_resnet8"]
    assert a["numpy"] != b["numpy"] and a["random"] != b["random"] and a["torch"] != b["torch"]


@pytest.mark.slow
def test_a_job_whose_start_settings_differ_runs_in_its_own_process(server, cache, plugin_dir, tmp_path):
    _, env, log = server
    before = len(forked_pids(log))
    job_env = {**env, "PYTHONPATH": f"{env['PYTHONPATH']}{os.pathsep}{plugin_dir}", "PYTHONHASHSEED": "1",
               "OMP_NUM_THREADS": "1"}
    hashes = {}
    for mode, e in (("client", job_env), ("own", own_env(job_env))):
        e = {**e, "FS_PROBE": str(tmp_path / f"{mode}.json")}
        run = train(spec(cache, tmp_path / mode, plugins=("fsprobe",)), e)
        assert run.returncode == 0, run.stderr[-2000:]
        hashes[mode] = json.loads(Path(e["FS_PROBE"]).read_text())["hash"]
        if mode == "client":
            assert "declined the job" in run.stderr and "OMP_NUM_THREADS, PYTHONHASHSEED" in run.stderr
    assert len(forked_pids(log)) == before and hashes["client"] == hashes["own"]


@pytest.mark.slow
def test_a_failing_job_fails_with_its_status_and_message(server, tmp_path):
    _, env, log = server
    before = len(forked_pids(log))
    bad = json.dumps({"model": "resnet20", "paths": {"metrics": str(tmp_path / "m.json"),
                                                     "checkpoints": str(tmp_path / "c")}})
    out = train(bad, env)
    assert len(forked_pids(log)) == before + 1
    assert out.returncode == 2 and out.stderr.count("debench train: error: protocol.epochs") == 1, out.stderr
    assert not (tmp_path / "m.json").exists()


@pytest.mark.slow
def test_a_cancelled_job_ends_its_forked_child(server, cache, tmp_path):
    _, env, log = server
    before = set(forked_pids(log))
    client = start_job(spec(cache, tmp_path, iterations=100_000), env)
    child = wait_for(lambda: set(forked_pids(log)) - before, "the job to reach the server", proc=client).pop()
    # the child logs its pid once it has named itself: no window in which it still shows as python
    assert Path(f"/proc/{child}/comm").read_text().strip() == "debench train"  # as top shows it
    client.send_signal(signal.SIGTERM)  # what Snakemake does to a cancelled job
    client.wait(timeout=30)
    wait_for(lambda: not running(child), f"forked child {child} to end after its client ended", timeout=20)


@pytest.mark.slow
def test_stale_code_runs_in_its_own_process_and_provenance_names_it(cache, tmp_path):
    """Issue 24's reproduction: start the server, then edit protocol.py's crop padding."""
    src = copy_debench(tmp_path)
    log = tmp_path / "fork_server.log"
    proc, env = start_server(log, PYTHONPATH=str(src))  # the server imports the copy
    try:
        wait_for(lambda: "ready" in log.read_text(), "the server to preload")
        protocol = src / "debench" / "train" / "protocol.py"
        protocol.write_text(protocol.read_text().replace("crop_padding: int = 4", "crop_padding: int = 0"))
        client = train(spec(cache, tmp_path / "client"), env)
        own = train(spec(cache, tmp_path / "own"), own_env(env))
        assert client.returncode == 0 and own.returncode == 0, (client.stderr[-2000:], own.stderr[-2000:])
        assert "declined the job: its code" in client.stderr and not forked_pids(log)
    finally:
        forkserver.stop(proc)
    a, b = (json.loads((tmp_path / m / "metrics.json").read_text()) for m in ("client", "own"))
    assert comparable(a) == comparable(b)
    assert a["protocol"]["crop_padding"] == 0  # the new code's protocol, and the code that ran is named:
    fingerprint = subprocess.run([sys.executable, "-c", "from debench.forkserver.client import code_fingerprint as f;"
                                  "print(f())"], env=own_env(env), capture_output=True, text=True, check=True)
    assert a["provenance"]["debench_code"] == fingerprint.stdout.strip()


# ---- faults: a killed job, a killed or frozen server ---------------------------------------------

def _wait_for_checkpoints(out: Path, client: subprocess.Popen, n: int = 2) -> None:
    wait_for(lambda: len(list((out / "ckpt").rglob("*.pt"))) >= n, f"{n} checkpoints", proc=client)


@pytest.fixture(scope="module")
def uninterrupted(cache, tmp_path_factory, server):
    """The fault tests' job (60 steps, a checkpoint every epoch) run in a process of its own."""
    out = tmp_path_factory.mktemp("uninterrupted")
    run = train(spec(cache, out, iterations=60), own_env(server[1]))
    assert run.returncode == 0, run.stderr[-2000:]
    return json.loads((out / "metrics.json").read_text())


@pytest.mark.slow
def test_a_killed_forked_job_resumes_to_the_uninterrupted_result(server, cache, uninterrupted, tmp_path):
    _, env, log = server
    before = set(forked_pids(log))
    client = start_job(spec(cache, tmp_path, iterations=60), env)
    child = wait_for(lambda: set(forked_pids(log)) - before, "the job to reach the server", proc=client).pop()
    _wait_for_checkpoints(tmp_path, client)
    os.kill(child, signal.SIGKILL)
    assert client.wait(timeout=60) == 128 + signal.SIGKILL
    assert not running(child) and not (tmp_path / "metrics.json").exists()
    checkpoints = sorted((tmp_path / "ckpt").rglob("*.pt"))
    assert checkpoints  # nothing deleted: the rerun resumes from them
    rerun = train(spec(cache, tmp_path, iterations=60), env)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    record = json.loads((tmp_path / "metrics.json").read_text())
    assert record["resumed_from_epoch"] > 0
    assert comparable(record, "resumed_from_epoch") == comparable(uninterrupted, "resumed_from_epoch")


@pytest.mark.slow
def test_a_frozen_or_killed_server_costs_no_finished_result_and_leaves_no_process(cache, src_copy, uninterrupted,
                                                                                 tmp_path):
    log = tmp_path / "fork_server.log"
    proc, env = start_server(log, PYTHONPATH=str(src_copy))
    try:
        wait_for(lambda: "ready" in log.read_text(), "the server to preload")
        # 1. a server that cannot answer (stopped): the job's status comes from its child itself
        quick = tmp_path / "quick"
        client = start_job(spec(cache, quick, iterations=2), env)
        wait_for(lambda: forked_pids(log), "the job to reach the server", proc=client)
        os.kill(proc.pid, signal.SIGSTOP)
        try:
            assert client.wait(timeout=300) == 0, client.stderr.read()
        finally:
            os.kill(proc.pid, signal.SIGCONT)
        assert json.loads((quick / "metrics.json").read_text())["status"] == "ok"
        # 2. a server killed while a job runs takes its child along; the client reports a failure
        out = tmp_path / "killed"
        before = set(forked_pids(log))
        client = start_job(spec(cache, out, iterations=60), env)
        child = wait_for(lambda: set(forked_pids(log)) - before, "the job to reach the server", proc=client).pop()
        _wait_for_checkpoints(out, client)
        os.kill(proc.pid, signal.SIGKILL)
        assert client.wait(timeout=60) != 0
        assert "ended without an exit status" in client.stderr.read()
        wait_for(lambda: not running(child), f"forked child {child} to end with its server", timeout=20)
        assert not (out / "metrics.json").exists() and list((out / "ckpt").rglob("*.pt"))
    finally:
        forkserver.stop(proc)
    assert not Path(proc.args[proc.args.index("--socket") + 1]).parent.exists()
    assert json.loads((quick / "metrics.json").read_text())["status"] == "ok"  # still there
    # 3. the rerun (what --rerun-incomplete does: the same job again) resumes to the uninterrupted result
    rerun = train(spec(cache, out, iterations=60), own_env(env))
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    record = json.loads((out / "metrics.json").read_text())
    assert record["resumed_from_epoch"] > 0
    assert comparable(record, "resumed_from_epoch") == comparable(uninterrupted, "resumed_from_epoch")


# ---- the client's side and the lifecycle ---------------------------------------------------------

def test_without_a_usable_server_the_job_runs_in_its_own_process(monkeypatch, tmp_path):
    monkeypatch.setenv(forkserver.ENV, forkserver.address(tmp_path / "gone.sock"))
    assert forkserver.delegate(["train"]) is None  # a note, then the caller trains itself
    for other in ({"host": "elsewhere"}, {"prefix": "/another/env"}):  # a cluster node, a conda env
        value = {**json.loads(forkserver.address(tmp_path / "gone.sock")), **other}
        monkeypatch.setenv(forkserver.ENV, json.dumps(value))
        assert forkserver.delegate(["train"]) is None
    monkeypatch.setenv(forkserver.ENV, "not json")
    assert forkserver.delegate(["train"]) is None


def test_the_address_names_this_host_and_environment(tmp_path):
    value = json.loads(forkserver.address(tmp_path / "s.sock"))
    assert value == {"host": socket.gethostname(), "prefix": sys.prefix, "socket": str(tmp_path / "s.sock")}


@pytest.mark.slow
def test_an_idle_server_ends_when_its_parent_has_ended(tmp_path):
    parent = subprocess.Popen([sys.executable, "-c", "pass"])
    parent.wait()
    sock = tmp_path / "s.sock"
    proc = subprocess.Popen([*DEBENCH, "fork-server", "--socket", str(sock), "--parent-pid", str(parent.pid)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert proc.wait(timeout=120) == 0
    finally:
        proc.kill()
    assert not sock.exists()


def test_the_fork_server_is_opt_in_on_in_the_smoke_preset_only():
    """Not provably a fresh process in every respect, and worth <1% of a survey job: off unless asked."""
    import yaml

    from debench.config import load_config, run_identity

    schema = yaml.safe_load((ROOT / "workflow" / "schemas" / "config.schema.yaml").read_text())
    assert schema["properties"]["runtime"]["properties"]["fork_server"]["default"] is False
    assert load_config(ROOT / "config" / "config.yaml")["runtime"]["fork_server"] is False
    config = load_config(ROOT / "config" / "smoke.yaml")
    assert config["runtime"]["fork_server"] is True
    exp = next(iter(config["experiments"]))
    args = (exp, config["experiments"][exp]["datasets"][0], "resnet20", 0)
    base = run_identity(config, *args)
    config["runtime"]["fork_server"] = False
    assert run_identity(config, *args) == base


def _fake_server(path: Path, reply: bytes):
    """A listener that takes one request, answers ``reply`` and hangs up, like a server that died.

    It reads the whole request (the header too) before it answers, as the real server does: one
    that answered and hung up first would make the client's ``sendall(header)`` fail whenever the
    client was slower than it, and the client would then report an unusable server instead of
    reading the reply (a flaky test under load, seen in a CI run beside the CPU campaign).
    """
    import threading

    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(1)

    def once():
        conn, _ = listener.accept()
        head, fds, _, _ = socket.recv_fds(conn, 4, 3)
        for fd in fds:
            os.close(fd)
        assert fs_client._recv_exactly(conn, fs_client._LENGTH.unpack(head)[0]) is not None, \
            "the client hung up before sending its header"
        conn.sendall(reply)
        conn.close()
        listener.close()

    thread = threading.Thread(target=once)
    thread.start()
    return thread


@pytest.mark.parametrize(("reply", "expected"), [
    (b"", None),  # ended before taking the job: nothing ran, the client trains itself
    (b"-\x00\x00\x00\x03why", None),  # declined: the same
    (b"+", 1),  # the job ran and ended without a status: it failed
    (b"+=\x00\x00\x00\x07", 7),  # the child's status
    (b"+=\xff\xff\xff\xf7", 128 + 9),  # killed by SIGKILL (the server's waitstatus)
])
def test_the_client_reads_the_outcome(monkeypatch, tmp_path, reply, expected):
    path = tmp_path / "s.sock"
    thread = _fake_server(path, reply)
    monkeypatch.setenv(forkserver.ENV, forkserver.address(path))
    send_fds = socket.send_fds

    def slow_send_fds(*args, **kwargs):  # a loaded machine: the client is slow to send its header
        sent = send_fds(*args, **kwargs)
        time.sleep(0.2)
        return sent

    monkeypatch.setattr(fs_client.socket, "send_fds", slow_send_fds)
    assert forkserver.delegate(["train", "--spec", "{}"]) == expected
    thread.join(timeout=10)


def test_stopping_a_server_that_died_early_removes_its_socket_file(tmp_path):
    proc = forkserver.start(tmp_path / "fs.log", parent_pid=os.getpid())
    os.environ.pop(forkserver.ENV)
    proc.kill()  # dies during its imports, before its own clean-up
    proc.wait()
    sock = Path(proc.args[proc.args.index("--socket") + 1])
    sock.touch(exist_ok=True)  # as a bound socket would have left it
    forkserver.stop(proc)
    assert not sock.exists() and not sock.parent.exists()


def test_the_code_fingerprint_covers_linked_package_data(tmp_path, monkeypatch):
    # in a checkout, debench/_data/schemas is a link to workflow/schemas: the run-record schema
    # decides what a job writes, so editing it must change the fingerprint
    import importlib.util

    schemas = tmp_path / "workflow" / "schemas"
    schemas.mkdir(parents=True)
    (schemas / "run_record.schema.json").write_text('{"version": 1}')
    pkg = tmp_path / "src" / "debench"
    (pkg / "_data").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "_data" / "schemas").symlink_to(schemas, target_is_directory=True)
    spec = importlib.util.spec_from_file_location("debench", pkg / "__init__.py",
                                                  submodule_search_locations=[str(pkg)])
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: spec)
    before = fs_client.code_fingerprint()
    (schemas / "run_record.schema.json").write_text('{"version": 2}')
    assert fs_client.code_fingerprint() != before
