"""The client side and lifecycle of the fork server: start, stop, and hand a job to it."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

ENV = "DEBENCH_FORKSERVER"  # JSON: host, Python prefix, socket path (set by the Snakefile for its jobs)
_STATUS = struct.Struct("!i")
_LENGTH = struct.Struct("!I")
# what the server (or the job's child) sends back; every message starts with one of these tags
_FORKED = b"+"  # the child is about to run the job (sent by the child itself)
_EXITED = b"="  # followed by _STATUS: the job's exit status (sent by the child, and by the server)
_DECLINED = b"-"  # followed by _LENGTH and a message: nothing ran, the client runs the job itself
# the distributions whose code a forked job runs from the server's memory (debench's own files are
# hashed); a different installed version means another job than the one the server preloaded
FINGERPRINT_DISTRIBUTIONS = ("torch", "mlflow", "numpy", "torchdiffeq", "torchsde", "torchvision")
# Snakemake gives each shell job these, set to the job's threads (snakemake/shell.py)
THREAD_VARIABLES = ("OMP_NUM_THREADS", "GOTO_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                    "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")
_LOADED_CODE: list[str] = []


def code_fingerprint() -> str:
    """A hash of the code a ``debench train`` would run if this process started it now.

    Every file of the ``debench`` package this interpreter imports (its path and bytes), and the
    installed versions of :data:`FINGERPRINT_DISTRIBUTIONS`. About 10 ms.
    """
    import importlib.metadata
    import importlib.util

    spec = importlib.util.find_spec("debench")
    root = Path(next(iter(spec.submodule_search_locations)))
    digest = hashlib.sha256(str(root).encode())
    # os.walk follows the links of the package's data folder (debench/_data/schemas ->
    # workflow/schemas in a checkout), which Path.rglob does not enter
    files = [Path(d) / f for d, dirs, names in os.walk(root, followlinks=True) if "__pycache__" not in d
             for f in names]
    for path in sorted(files):
        digest.update(b"\0" + str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    for dist in FINGERPRINT_DISTRIBUTIONS:
        try:
            version = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            version = "-"
        digest.update(f"\0{dist}={version}".encode())
    return digest.hexdigest()[:16]


def loaded_code() -> str:
    """The :func:`code_fingerprint` of the code this process runs, taken once, when it started.

    A ``debench train`` process takes it first thing (:func:`delegate`); the fork server takes it
    before it imports anything, and its children inherit it (they run only if their job's
    fingerprint is the same). Run provenance records it as ``debench_code``.
    """
    if not _LOADED_CODE:
        _LOADED_CODE.append(code_fingerprint())
    return _LOADED_CODE[0]


def address(path: str | Path) -> str:
    """The value of :data:`ENV` for a server on ``path``, of this host and this Python environment.

    A client uses a server only if both match its own: a job on a cluster node, or a job in
    another environment (``--sdm conda``), runs in its own process.
    """
    return json.dumps({"host": socket.gethostname(), "prefix": sys.prefix, "socket": str(path)})


def start(log: str | Path, parent_pid: int | None = None, threads: int | None = None) -> subprocess.Popen | None:
    """Start a server for this process's jobs and point them to it through :data:`ENV`.

    Args:
        log: file the server writes its lines to (created, with its folder).
        parent_pid: the process whose end ends an idle server (default: this one).
        threads: the server starts with :data:`THREAD_VARIABLES` set to this, as Snakemake sets
            them for a job of that many threads (only jobs whose values match are forked).

    Returns:
        The server's process; give it to :func:`stop`. None where the server cannot run (not
        Linux: it needs ``SO_PEERCRED`` and ``PR_SET_PDEATHSIG``); every job then runs in its own
        process.
    """
    if not sys.platform.startswith("linux"):
        print("debench: the fork server needs Linux; every job runs in its own process", file=sys.stderr)
        return None
    parent_pid = parent_pid or os.getpid()
    tmp = tempfile.gettempdir()
    tmp = tmp if len(tmp) <= 64 else "/tmp"  # a Unix socket's path holds at most 107 bytes
    # a folder only this user can enter (mkdtemp: mode 0700) holds the socket
    folder = Path(tempfile.mkdtemp(prefix=f"debench-fs-{parent_pid}-{secrets.token_hex(3)}-", dir=tmp))
    path = folder / "sock"
    env = dict(os.environ)
    env.pop(ENV, None)
    if threads is not None:
        env.update(dict.fromkeys(THREAD_VARIABLES, str(threads)))
    Path(log).parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "debench.cli", "fork-server", "--socket", str(path),
                                 "--parent-pid", str(parent_pid)], stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True, env=env)
    os.environ[ENV] = address(path)
    return proc


def stop(proc: subprocess.Popen | None) -> None:
    """End a server from :func:`start` (its running children are terminated) and forget it."""
    os.environ.pop(ENV, None)
    if proc is None:
        return
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    # a server killed before it could clean up (during its imports, say) leaves its socket and folder
    path = Path(proc.args[proc.args.index("--socket") + 1])
    path.unlink(missing_ok=True)
    if path.parent.name.startswith("debench-fs-"):
        shutil.rmtree(path.parent, ignore_errors=True)


def request(argv: list[str]) -> dict:
    """What a job sends the server: its command line and everything a process of its own would start with."""
    umask = os.umask(0o022)
    os.umask(umask)
    return {"argv": argv, "cwd": os.getcwd(), "env": dict(os.environ), "sys_path": list(sys.path),
            "umask": umask, "affinity": sorted(os.sched_getaffinity(0)), "code": loaded_code()}


def delegate(argv: list[str]) -> int | None:
    """Run ``debench <argv>`` in a child of the fork server named by :data:`ENV`.

    Args:
        argv: the command line after ``debench``.

    Returns:
        The child's exit status (128 + signal number if a signal ended it), or None when there is
        no usable server on this host, or it declined the job (another code, settings that only
        take effect at interpreter start): the caller then runs the command itself.
    """
    loaded_code()  # the code this process would run: taken now, before anything else is imported
    try:
        server = json.loads(os.environ.get(ENV) or "null")
    except ValueError:
        server = None
    if not isinstance(server, dict) or server.get("host") != socket.gethostname() or server.get("prefix") != sys.prefix:
        return None
    path = str(server.get("socket"))
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
        header = json.dumps(request(argv)).encode()
        socket.send_fds(sock, [_LENGTH.pack(len(header))], [0, 1, 2])
        sock.sendall(header)
    except OSError as exc:
        sock.close()
        print(f"debench: fork server {path} is not usable ({exc}); running in this process", file=sys.stderr)
        return None
    try:
        return _outcome(sock, path)
    finally:
        sock.close()


def _outcome(sock: socket.socket, path: str) -> int | None:
    started = False
    while True:
        tag = _recv_exactly(sock, 1)
        if tag == _FORKED:
            started = True
        elif tag == _EXITED:
            reply = _recv_exactly(sock, _STATUS.size)
            if reply is not None:
                code = _STATUS.unpack(reply)[0]
                return 128 - code if code < 0 else code
            tag = None
        elif tag == _DECLINED:
            head = _recv_exactly(sock, _LENGTH.size)
            reason = (_recv_exactly(sock, _LENGTH.unpack(head)[0]) or b"?") if head else b"?"
            print(f"debench: fork server {path} declined the job: {reason.decode(errors='replace')}; "
                  "running in this process", file=sys.stderr)
            return None
        if tag not in (_FORKED, _EXITED, _DECLINED):
            if not started:  # the server ended before the job started: nothing ran
                print(f"debench: fork server {path} did not take the job; running in this process", file=sys.stderr)
                return None
            # both the server and the job's child are gone without a status: the child was killed
            print(f"debench: the job's forked child ended without an exit status (fork server {path} ended "
                  "and took it along, or it was killed)", file=sys.stderr)
            return 1


def _recv_exactly(sock: socket.socket, n: int) -> bytes | None:
    data = b""
    while len(data) < n:
        try:
            chunk = sock.recv(n - len(data))
        except ConnectionResetError:
            return None
        if not chunk:
            return None
        data += chunk
    return data
