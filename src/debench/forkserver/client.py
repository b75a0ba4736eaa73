"""The client side and lifecycle of the fork server: start, stop, and hand a job to it."""

from __future__ import annotations

import json
import os
import secrets
import socket
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

ENV = "DEBENCH_FORKSERVER"  # JSON: host, Python prefix, socket path (set by the Snakefile for its jobs)
_STATUS = struct.Struct("!i")
_LENGTH = struct.Struct("!I")
_FORKED = b"+"  # sent once the child runs; a server that ends before it leaves the job to the client


def address(path: str | Path) -> str:
    """The value of :data:`ENV` for a server on ``path``, of this host and this Python environment.

    A client uses a server only if both match its own: a job on a cluster node, or a job in
    another environment (``--sdm conda``), runs in its own process.
    """
    return json.dumps({"host": socket.gethostname(), "prefix": sys.prefix, "socket": str(path)})


def start(log: str | Path, parent_pid: int | None = None) -> subprocess.Popen:
    """Start a server for this process's jobs and point them to it through :data:`ENV`.

    Args:
        log: file the server writes its lines to (created, with its folder).
        parent_pid: the process whose end ends an idle server (default: this one).

    Returns:
        The server's process; give it to :func:`stop`.
    """
    parent_pid = parent_pid or os.getpid()
    tmp = tempfile.gettempdir()
    tmp = tmp if len(tmp) <= 64 else "/tmp"  # a Unix socket's path holds at most 107 bytes
    path = Path(tmp) / f"debench-forkserver-{os.getuid()}-{parent_pid}-{secrets.token_hex(4)}.sock"
    Path(log).parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "debench.cli", "fork-server", "--socket", str(path),
                                 "--parent-pid", str(parent_pid)], stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
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
    # a server killed before it could clean up (during its imports, say) leaves its socket file
    Path(proc.args[proc.args.index("--socket") + 1]).unlink(missing_ok=True)


def delegate(argv: list[str]) -> int | None:
    """Run ``debench <argv>`` in a child of the fork server named by :data:`ENV`.

    Args:
        argv: the command line after ``debench``.

    Returns:
        The child's exit status (128 + signal number if a signal ended it), or None when there is
        no usable server on this host: the caller then runs the command itself.
    """
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
        header = json.dumps({"argv": argv, "cwd": os.getcwd(), "env": dict(os.environ)}).encode()
        socket.send_fds(sock, [_LENGTH.pack(len(header))], [0, 1, 2])
        sock.sendall(header)
    except OSError as exc:
        sock.close()
        print(f"debench: fork server {path} is not usable ({exc}); running in this process", file=sys.stderr)
        return None
    if _recv_exactly(sock, 1) != _FORKED:  # the server ended before taking the job: nothing ran
        sock.close()
        print(f"debench: fork server {path} did not take the job; running in this process", file=sys.stderr)
        return None
    reply = _recv_exactly(sock, _STATUS.size)
    sock.close()
    if reply is None:
        print(f"debench: fork server {path} ended while the job ran", file=sys.stderr)
        return 1
    code = _STATUS.unpack(reply)[0]
    return 128 - code if code < 0 else code


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


