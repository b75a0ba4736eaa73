"""The fork server (debench.forkserver): a job forked from it is the job its own process runs."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from debench import forkserver
from tests.conftest import ROOT

DEBENCH = [sys.executable, "-m", "debench.cli"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A running fork server and the environment that points clients to it."""
    log = tmp_path_factory.mktemp("fs") / "fork_server.log"
    proc = forkserver.start(log)
    env = dict(os.environ)
    os.environ.pop(forkserver.ENV)  # only the clients given `env` use it
    yield proc, env, log
    forkserver.stop(proc)
    assert proc.poll() is not None


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    from debench.data.cache import prepare_dataset

    path = tmp_path_factory.mktemp("data") / "cifar10.npz"
    prepare_dataset("cifar10", "synthetic", path, train_size=32, test_size=16, seed=0)
    return path


def spec(cache: Path, out: Path, iterations: int = 2) -> str:
    return json.dumps({
        "experiment": "fs", "preset": "test", "table": "discrete", "mode": "paper", "seed": 3,
        "model": "resnet20", "dataset": "cifar10", "model_args": {}, "data": {"cache": str(cache)},
        "protocol": {"batch_size": 16, "iterations": iterations, "eval_batch_size": 16, "checkpoint_every": 1,
                     "optimizer": "sgd", "lr": 0.1, "momentum": 0.9},
        "runtime": {"device": "cpu", "channels_last": True, "amp": "off", "compile": False},
        "tracking": {"enabled": False},
        "paths": {"metrics": str(out / "metrics.json"), "checkpoints": str(out / "ckpt")},
    })


def train(spec_json: str, env: dict | None, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([*DEBENCH, "train", "--spec", spec_json, "--threads", "1"], env=env,
                          capture_output=True, text=True, timeout=300, **kw)


def forked_pids(log: Path) -> list[int]:
    return [int(p) for p in re.findall(r"pid (\d+): debench train", log.read_text())]


@pytest.mark.slow  # the server imports torch and MLflow once: ~4 s on 2 cores
def test_a_forked_job_learns_exactly_what_its_own_process_learns(server, cache, tmp_path):
    _, env, log = server
    before = len(forked_pids(log)) if log.exists() else 0
    own = train(spec(cache, tmp_path / "own"), None)
    forked = train(spec(cache, tmp_path / "forked"), env)
    assert own.returncode == 0 and forked.returncode == 0, (own.stderr[-2000:], forked.stderr[-2000:])
    assert len(forked_pids(log)) == before + 1, "the job did not go through the fork server"
    assert "status ok" in forked.stderr  # the child writes to the client's streams: the job's log
    a = json.loads((tmp_path / "own" / "metrics.json").read_text())
    b = json.loads((tmp_path / "forked" / "metrics.json").read_text())
    for key in ("config_hash", "params", "train_loss", "train_accuracy", "test_loss", "test_accuracy",
                "nfe_forward", "activation_memory_mb"):
        assert a[key] == b[key], key


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
    client = subprocess.Popen([*DEBENCH, "train", "--spec", spec(cache, tmp_path, iterations=100_000),
                               "--threads", "1"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while not set(forked_pids(log)) - before:
        assert time.time() < deadline and client.poll() is None, "the job never reached the server"
        time.sleep(0.1)
    child = (set(forked_pids(log)) - before).pop()
    assert Path(f"/proc/{child}/comm").read_text().strip() == "debench train"  # as top shows it
    client.send_signal(signal.SIGTERM)  # what Snakemake does to a cancelled job
    client.wait(timeout=30)
    deadline = time.time() + 20
    while _running(child):
        assert time.time() < deadline, f"forked child {child} still runs after its client ended"
        time.sleep(0.1)


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


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


def test_the_fork_server_setting_changes_no_run_identity():
    from debench.config import load_config, run_identity

    config = load_config(ROOT / "config" / "smoke.yaml")
    assert config["runtime"]["fork_server"] is True  # the schema's default
    exp = next(iter(config["experiments"]))
    args = (exp, config["experiments"][exp]["datasets"][0], "resnet20", 0)
    base = run_identity(config, *args)
    config["runtime"]["fork_server"] = not config["runtime"].get("fork_server", True)
    assert run_identity(config, *args) == base


def _fake_server(path: Path, reply: bytes):
    """A listener that takes one request, answers ``reply`` and hangs up, like a server that died."""
    import threading

    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(1)

    def once():
        conn, _ = listener.accept()
        _, fds, _, _ = socket.recv_fds(conn, 4, 3)
        for fd in fds:
            os.close(fd)
        conn.sendall(reply)
        conn.close()
        listener.close()

    thread = threading.Thread(target=once)
    thread.start()
    return thread


@pytest.mark.parametrize(("reply", "expected"), [(b"", None), (b"+", 1), (b"+" + b"\x00\x00\x00\x07", 7)])
def test_a_server_that_ends_before_forking_leaves_the_job_to_the_client(monkeypatch, tmp_path, reply, expected):
    # nothing ran: the client trains itself; the job ran and the server died: the job failed
    path = tmp_path / "s.sock"
    thread = _fake_server(path, reply)
    monkeypatch.setenv(forkserver.ENV, forkserver.address(path))
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
    assert not sock.exists()
