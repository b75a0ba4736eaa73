"""A fork server for the training jobs of a local DAG: torch, MLflow and debench imported once.

Snakemake runs every job as its own process. A smoke-preset job trains for well under a second
but spends about three seconds importing torch, ``torch._dynamo`` (which ``torch.optim`` pulls in
on the first optimizer) and MLflow's SQL store (``benchmarks/job_overhead.py`` shows the split).
On the 2-core CPU that is most of the smoke DAG's time, and on a GPU it is the fixed cost of every
short run. So a local workflow starts one server (``debench fork-server``, from the Snakefile's
``onstart``) that imports all of that once; ``debench train`` then hands its arguments, working
directory, environment and standard streams to the server over a Unix socket, and the server
forks a child that runs exactly ``debench train`` as its own process would, and sends back the
child's exit status. The client passes its own streams, so the child writes the job's log, and
the client exits with the child's status, so Snakemake sees an ordinary job.

Without a server (``fork_server: false``, a job on a cluster node, a test calling ``debench
train``, a server that is gone) the client trains in its own process, as before.

Fork safety: the server stays single-threaded and never initialises CUDA, an MLflow store or a
torch thread pool; each child creates its own after the fork. A client that dies (Snakemake
cancelling the job) closes its socket, and the server then terminates the child's process group.
"""

from __future__ import annotations

import importlib
import json
import os
import selectors
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

ENV = "DEBENCH_FORKSERVER"  # JSON: host, Python prefix, socket path (set by the Snakefile for its jobs)
PRELOAD = ("torch", "torch.optim", "torch._dynamo", "numpy", "mlflow.tracking", "mlflow.entities",
           "mlflow.store.tracking.sqlalchemy_store", "debench.registry", "debench.train.loop",
           "debench.measurement", "debench.track.tracker")
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
    path = Path(tempfile.gettempdir()) / f"debench-forkserver-{os.getuid()}-{parent_pid}.sock"
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
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


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


class _Server:
    def __init__(self, path: Path, parent_pid: int | None, idle_s: float):
        self.path, self.parent_pid, self.idle_s = path, parent_pid, idle_s
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        path.unlink(missing_ok=True)
        self.listener.bind(str(path))
        os.chmod(path, 0o600)
        self.listener.listen(64)  # clients wait in the backlog while the imports below run
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.listener, selectors.EVENT_READ)
        self.children: dict[int, socket.socket] = {}
        self.stopping = False
        self.last_activity = time.monotonic()

    def serve(self) -> None:
        signal.signal(signal.SIGTERM, lambda *_: setattr(self, "stopping", True))
        while not self._should_stop():
            for key, _ in self.selector.select(timeout=0.2):
                if key.fileobj is self.listener:
                    self._accept()
                else:
                    self._client_readable(key.fileobj, key.data)
            self._reap()
        self._shutdown()

    def _should_stop(self) -> bool:
        if self.stopping or not self.path.exists():
            return True
        if self.children:
            self.last_activity = time.monotonic()
            return False
        parent_gone = self.parent_pid is not None and not _alive(self.parent_pid)
        return parent_gone or time.monotonic() - self.last_activity > self.idle_s

    def _accept(self) -> None:
        conn, _ = self.listener.accept()
        conn.settimeout(10)
        try:
            head, fds, _, _ = socket.recv_fds(conn, _LENGTH.size, 3)
            request = json.loads(_recv_exactly(conn, _LENGTH.unpack(head)[0]) or b"")
        except (OSError, ValueError, struct.error) as exc:
            print(f"fork server: dropped a malformed request ({exc})", file=sys.stderr, flush=True)
            conn.close()
            return
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            self._child(request, fds)  # never returns
        for fd in fds:
            os.close(fd)
        try:
            os.setpgid(pid, pid)
        except OSError:
            pass  # the child already did it, or has ended
        try:
            conn.sendall(_FORKED)
        except OSError:
            pass  # the client is gone: the next select sees it and ends the child
        self.children[pid] = conn
        self.selector.register(conn, selectors.EVENT_READ, pid)
        print(f"fork server: pid {pid}: debench {' '.join(request['argv'][:1])}", file=sys.stderr, flush=True)

    def _child(self, request: dict, fds: list[int]) -> None:
        code = 1
        try:
            os.setpgid(0, 0)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.default_int_handler)
            self.selector.close()
            self.listener.close()
            for conn in self.children.values():
                conn.close()
            for fd, target in zip(fds, (0, 1, 2)):
                os.dup2(fd, target)
                os.close(fd)
            os.chdir(request["cwd"])
            os.environ.clear()
            os.environ.update(request["env"])
            sys.argv = ["debench", *request["argv"]]
            from debench.cli import main

            code = main(request["argv"])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:  # noqa: BLE001 - the job's traceback goes to the job's log
            traceback.print_exc()
        finally:
            import logging

            logging.shutdown()
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)

    def _client_readable(self, conn: socket.socket, pid: int) -> None:
        try:
            gone = conn.recv(1) == b""
        except OSError:
            gone = True
        if gone:  # the job was cancelled: end the child that runs it
            self.selector.unregister(conn)
            _killpg(pid, signal.SIGTERM)

    def _reap(self) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            conn = self.children.pop(pid, None)
            if conn is None:
                continue
            try:
                self.selector.unregister(conn)
            except KeyError:
                pass  # unregistered when its client went away
            try:
                conn.sendall(_STATUS.pack(os.waitstatus_to_exitcode(status)))
            except OSError:
                pass
            conn.close()

    def _shutdown(self) -> None:
        for pid in list(self.children):
            _killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while self.children and time.monotonic() < deadline:
            self._reap()
            time.sleep(0.05)
        self.listener.close()
        if self.path.exists():
            self.path.unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _killpg(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def serve(path: str | Path, parent_pid: int | None = None, idle_s: float = 900.0) -> None:
    """Listen on ``path``, import :data:`PRELOAD`, and fork a child for each ``debench`` request.

    The server ends on SIGTERM, when its socket file is removed, or, while no job runs, when
    ``parent_pid`` (the Snakemake process) has ended or nothing arrived for ``idle_s`` seconds.

    Args:
        path: the Unix socket to create (an old one there is replaced).
        parent_pid: the process whose end ends the server.
        idle_s: seconds without a job after which the server ends.
    """
    server = _Server(Path(path), parent_pid, idle_s)
    started = time.monotonic()
    for module in PRELOAD:
        importlib.import_module(module)
    if sys.modules["torch"].cuda.is_initialized():  # a forked child could not use CUDA then
        raise RuntimeError("CUDA was initialised while preloading; the fork server cannot serve GPU jobs")
    print(f"fork server: {path} ready, {len(PRELOAD)} modules imported in {time.monotonic() - started:.1f} s",
          file=sys.stderr, flush=True)
    server.serve()
