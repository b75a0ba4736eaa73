"""The server: preload, then fork one child per ``debench`` request (see :mod:`debench.forkserver`)."""

from __future__ import annotations

import importlib
import json
import os
import selectors
import signal
import socket
import struct
import sys
import time
import traceback
from pathlib import Path

from debench.forkserver.client import _FORKED, _LENGTH, _STATUS, _recv_exactly

# torch, numpy and the registry come with debench.train.loop; torch._dynamo and MLflow's SQL store
# are imported only later, by the first optimizer and the first tracked run
PRELOAD = ("debench.train.loop", "debench.measurement", "torch._dynamo", "mlflow.tracking",
           "mlflow.store.tracking.sqlalchemy_store")


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
        command = " ".join(["debench", *request["argv"][:1]])
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            self._child(request, fds, command)  # never returns
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
        print(f"fork server: pid {pid}: {command}", file=sys.stderr, flush=True)

    def _child(self, request: dict, fds: list[int], command: str) -> None:
        code = 1
        try:
            os.setpgid(0, 0)
            _name_process(command)
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


def _name_process(name: str) -> None:
    """Show a child as ``debench train`` in top and ``ps -o comm`` (Linux; elsewhere a no-op)."""
    try:
        Path("/proc/self/comm").write_text(name[:15])
    except OSError:
        pass


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
        try:
            importlib.import_module(module)
        except ImportError:
            if not module.startswith("mlflow"):  # training runs without MLflow, and so does the server
                raise
    if sys.modules["torch"].cuda.is_initialized():  # a forked child could not use CUDA then
        raise RuntimeError("CUDA was initialised while preloading; the fork server cannot serve GPU jobs")
    print(f"fork server: {path} ready, {len(PRELOAD)} modules imported in {time.monotonic() - started:.1f} s",
          file=sys.stderr, flush=True)
    server.serve()
