"""The server: preload, then fork one child per ``debench train`` request (see :mod:`debench.forkserver`)."""

from __future__ import annotations

import ctypes
import importlib
import json
import os
import re
import selectors
import signal
import socket
import struct
import sys
import time
import traceback
from pathlib import Path

from debench.forkserver.client import _DECLINED, _EXITED, _FORKED, _LENGTH, _STATUS, code_fingerprint, loaded_code

# torch, numpy and the registry come with debench.train.loop; torch._dynamo and MLflow's SQL store
# are imported only later, by the first optimizer and the first tracked run
PRELOAD = ("torch", "debench.train.loop", "debench.measurement", "torch._dynamo", "mlflow.tracking",
           "mlflow.store.tracking.sqlalchemy_store")
# variables read when the interpreter or a preloaded library starts (hash seed, allocator, OpenMP
# and BLAS pools, torch's and the dynamo config, locale): a job whose values differ from the
# server's runs in its own process. PYTHONPATH is not one of them: the child takes the job's
# sys.path (and a job whose path shadows a preloaded module runs in its own process).
START_VARIABLES = re.compile(r"^(PYTHON(?!PATH$)\w*|MALLOC_\w*|_?RJEM_MALLOC_CONF|LD_\w+|OMP_\w+|GOMP_\w+|KMP_\w+"
                             r"|MKL_\w+|OPENBLAS_\w+|GOTO_\w+|VECLIB_\w+|NUMEXPR_\w+|TORCH\w*|PYTORCH_\w+"
                             r"|LANG|LANGUAGE|LC_\w+)$")
MAX_REQUEST = 16 << 20  # bytes of a request's JSON
REQUEST_TIMEOUT_S = 10.0  # a connection that has not sent its whole request by then is dropped
_PR_SET_PDEATHSIG = 1
_RESTARTS = "DEBENCH_FORKSERVER_RESTARTS"
_TORCH_FIXED_SEED = 67280421310721  # what torch's default generator started from before it seeded randomly


def start_settings(env: dict[str, str]) -> dict[str, str]:
    """The variables of ``env`` that only take effect when a process starts (:data:`START_VARIABLES`)."""
    return {k: v for k, v in env.items() if START_VARIABLES.match(k)}


class _Pending:
    """A connection whose request is still arriving."""

    def __init__(self, conn: socket.socket):
        self.conn, self.data, self.fds = conn, b"", []
        self.deadline = time.monotonic() + REQUEST_TIMEOUT_S


class _Server:
    def __init__(self, path: Path, parent_pid: int | None, idle_s: float):
        self.path, self.parent_pid, self.idle_s = path, parent_pid, idle_s
        if path.parent.stat().st_mode & 0o077 or path.parent.stat().st_uid != os.getuid():
            raise RuntimeError(f"the fork server's folder {path.parent} must be this user's, mode 0700")
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        path.unlink(missing_ok=True)
        self.listener.bind(str(path))
        os.chmod(path, 0o600)
        self.listener.listen(64)  # clients wait in the backlog while the imports run
        self.listener.setblocking(False)
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.listener, selectors.EVENT_READ)
        self.pending: dict[socket.socket, _Pending] = {}
        self.children: dict[int, socket.socket] = {}
        self.stopping = False
        self.last_activity = time.monotonic()
        self.code = self.settings = self.torch_state = self.threads = None
        self.module_roots: dict[str, str] = {}

    def preload(self) -> None:
        """Take the code fingerprint, import :data:`PRELOAD`, and record what a fresh process starts with."""
        self.code = loaded_code()
        self.settings = start_settings(dict(os.environ))
        self.affinity = sorted(os.sched_getaffinity(0))
        for module in PRELOAD:
            try:
                importlib.import_module(module)
            except ImportError:
                if not module.startswith("mlflow"):  # training runs without MLflow, and so does the server
                    raise
            if module == "torch":  # a fresh interpreter's torch RNG state and thread counts
                torch = sys.modules["torch"]
                fixed = torch.initial_seed() == _TORCH_FIXED_SEED
                self.torch_state = torch.default_generator.get_state() if fixed else None
                self.threads = (torch.get_num_threads(), torch.get_num_interop_threads())
        if sys.modules["torch"].cuda.is_initialized():  # a forked child could not use CUDA then
            raise RuntimeError("CUDA was initialised while preloading; the fork server cannot serve GPU jobs")
        if code_fingerprint() != self.code:  # edited while importing: what is in memory is unknown
            restarts = int(os.environ.get(_RESTARTS, "0"))
            if restarts >= 3:
                raise RuntimeError("debench's files kept changing while the fork server imported them; not serving")
            print("fork server: debench's files changed while importing them; starting afresh", file=sys.stderr,
                  flush=True)
            os.environ[_RESTARTS] = str(restarts + 1)
            self.listener.close()
            os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])
        self.module_roots = _module_roots()

    def serve(self) -> None:
        signal.signal(signal.SIGTERM, lambda *_: setattr(self, "stopping", True))
        while not self._should_stop():
            self.step()
        self._shutdown()

    def step(self, timeout: float = 0.2) -> None:
        """Handle what is ready: new connections, request bytes, cancelled clients, ended children."""
        for key, _ in self.selector.select(timeout=timeout):
            try:
                if key.fileobj is self.listener:
                    self._accept()
                elif key.fileobj in self.pending:
                    self._read_request(self.pending[key.fileobj])
                else:
                    self._client_readable(key.fileobj, key.data)
            except Exception:  # noqa: BLE001 - one bad connection never stops the server
                print("fork server: error while serving a connection:", file=sys.stderr)
                traceback.print_exc()
                if key.fileobj in self.pending:
                    self._drop(self.pending[key.fileobj])
        self._expire()
        self._reap()

    def _should_stop(self) -> bool:
        if self.stopping or not self.path.exists():
            return True
        if self.children or self.pending:
            self.last_activity = time.monotonic()
            return False
        parent_gone = self.parent_pid is not None and not _alive(self.parent_pid)
        return parent_gone or time.monotonic() - self.last_activity > self.idle_s

    def _accept(self) -> None:
        try:
            conn, _ = self.listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        pid, uid, _ = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                          struct.calcsize("3i")))
        if uid != os.getuid():  # checked before a byte of the request is read
            print(f"fork server: refused a connection from uid {uid} (pid {pid})", file=sys.stderr, flush=True)
            _decline(conn, f"this fork server serves only uid {os.getuid()}")
            conn.close()
            return
        conn.setblocking(False)
        self.pending[conn] = _Pending(conn)
        self.selector.register(conn, selectors.EVENT_READ)

    def _read_request(self, p: _Pending) -> None:
        try:
            data, fds, _, _ = socket.recv_fds(p.conn, 1 << 16, 3)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data, fds = b"", []
        p.fds += fds
        p.data += data
        need = _LENGTH.size + (_LENGTH.unpack(p.data[:_LENGTH.size])[0] if len(p.data) >= _LENGTH.size else 0)
        if not data or need > _LENGTH.size + MAX_REQUEST or len(p.fds) > 3:
            self._reject(p, "request cut short" if not data else "request too large or too many descriptors")
            return
        if len(p.data) < _LENGTH.size or len(p.data) < need:
            return
        try:
            request = json.loads(p.data[_LENGTH.size:need])
        except ValueError as exc:
            self._reject(p, f"request is not JSON ({exc})")
            return
        problem = _malformed(request, p.fds)
        if problem:
            self._reject(p, problem)
            return
        reason = self._runs_elsewhere(request)
        if reason:
            print(f"fork server: a job runs in its own process: {reason}", file=sys.stderr, flush=True)
            self._reject(p, reason, quiet=True)
            return
        self.selector.unregister(p.conn)
        del self.pending[p.conn]
        self._fork(p.conn, request, p.fds)

    def _reject(self, p: _Pending, reason: str, quiet: bool = False) -> None:
        if not quiet:
            print(f"fork server: declined a malformed request: {reason}", file=sys.stderr, flush=True)
        p.conn.setblocking(True)
        p.conn.settimeout(1)
        _decline(p.conn, reason)
        self._drop(p)

    def _drop(self, p: _Pending) -> None:
        for fd in p.fds:
            os.close(fd)
        p.fds = []
        self.pending.pop(p.conn, None)
        try:
            self.selector.unregister(p.conn)
        except (KeyError, ValueError):
            pass
        p.conn.close()

    def _expire(self) -> None:
        now = time.monotonic()
        for p in [p for p in self.pending.values() if now > p.deadline]:
            self._reject(p, f"request not complete within {REQUEST_TIMEOUT_S:.0f} s")

    def _runs_elsewhere(self, request: dict) -> str | None:
        """Why this job must run in a process of its own (None: forking it is the same job)."""
        if request["code"] != self.code:
            return (f"its code ({request['code']}: debench's files, or the installed torch/MLflow) differs "
                    f"from the code the server preloaded ({self.code})")
        job = start_settings(request["env"])
        differ = sorted(k for k in set(job) | set(self.settings) if job.get(k) != self.settings.get(k))
        if differ:
            return f"settings that take effect only at interpreter start differ: {', '.join(differ)}"
        if sorted(request["affinity"]) != self.affinity:
            return "its CPU affinity differs from the server's"
        known = set(sys.path)
        for entry in request["sys_path"]:
            if entry not in known and os.path.isdir(entry or "."):
                shadowed = sorted(set(_top_level_names(entry or request["cwd"])) & set(self.module_roots))
                if shadowed:
                    return f"sys.path entry {entry!r} holds preloaded modules: {', '.join(shadowed[:5])}"
        missing = sorted({root for root in self.module_roots.values()} - set(request["sys_path"]))
        if missing:
            return f"its sys.path lacks {missing[0]!r}, where preloaded modules come from"
        return None

    def _fork(self, conn: socket.socket, request: dict, fds: list[int]) -> None:
        command = " ".join(["debench", *request["argv"][:1]])
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            self._child(conn, request, fds, command)  # never returns
        for fd in fds:
            os.close(fd)
        try:
            os.setpgid(pid, pid)
        except OSError:
            pass  # the child already did it, or has ended
        self.children[pid] = conn
        self.selector.register(conn, selectors.EVENT_READ, pid)

    def _child(self, conn: socket.socket, request: dict, fds: list[int], command: str) -> None:
        code = 1
        try:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.default_int_handler)
            _die_with_parent(signal.SIGTERM)
            if os.getppid() != self.server_pid:  # the server ended before the line above
                os._exit(1)
            os.setpgid(0, 0)
            _name_process(command)
            self.selector.close()
            self.listener.close()
            for other in [*self.children.values(), *self.pending]:
                other.close()
            conn.setblocking(True)
            # the job's process state: everything a process of its own would start with
            os.chdir(request["cwd"])
            os.umask(request["umask"])
            os.environ.clear()
            os.environ.update(request["env"])
            sys.path[:] = request["sys_path"]
            importlib.invalidate_caches()
            sys.path_importer_cache.clear()
            import tempfile

            tempfile.tempdir = None  # gettempdir() reads the job's TMPDIR again
            _fresh_random_state(self.torch_state, self.threads)
            sys.argv = ["debench", *request["argv"]]
            # logged by the child once it shows as `debench train`, so a reader of the log sees that name
            print(f"fork server: pid {os.getpid()}: {command}", file=sys.stderr, flush=True)
            for fd, target in zip(fds, (0, 1, 2)):
                os.dup2(fd, target)
                os.close(fd)
            conn.sendall(_FORKED)
            from debench.cli import main

            code = main(request["argv"])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:  # noqa: BLE001 - the job's traceback goes to the job's log
            traceback.print_exc()
        finally:
            import logging

            logging.shutdown()
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            except Exception:  # noqa: BLE001
                pass
            try:  # the status goes to the client from the child itself: it arrives without the server
                conn.sendall(_EXITED + _STATUS.pack(code))
            except Exception:  # noqa: BLE001
                pass
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
            except (KeyError, ValueError):
                pass  # unregistered when its client went away
            try:  # a child killed by a signal could not send its status itself
                conn.sendall(_EXITED + _STATUS.pack(os.waitstatus_to_exitcode(status)))
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
        for p in list(self.pending.values()):
            self._drop(p)
        self.listener.close()
        self.path.unlink(missing_ok=True)
        if self.path.parent.name.startswith("debench-fs-"):  # the private folder of client.start
            try:
                self.path.parent.rmdir()
            except OSError:
                pass


def _malformed(request: object, fds: list[int]) -> str | None:
    """What is wrong with a request (None: nothing)."""
    if not isinstance(request, dict):
        return "the request is not a JSON object"
    argv = request.get("argv")
    if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv) or not argv:
        return "argv must be a non-empty list of strings"
    if argv[0] != "train":
        return f"the fork server serves only `debench train`, not `debench {argv[0]}`"
    checks = {"cwd": lambda v: isinstance(v, str) and os.path.isabs(v),
              "env": lambda v: isinstance(v, dict) and all(isinstance(k, str) and isinstance(x, str)
                                                           for k, x in v.items()),
              "sys_path": lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
              "umask": lambda v: isinstance(v, int) and 0 <= v <= 0o777,
              "affinity": lambda v: isinstance(v, list) and all(isinstance(x, int) for x in v),
              "code": lambda v: isinstance(v, str)}
    for key, ok in checks.items():
        if not ok(request.get(key)):
            return f"{key} is missing or malformed"
    if len(fds) != 3:
        return f"expected the job's 3 standard streams, got {len(fds)} descriptors"
    return None


def _decline(conn: socket.socket, reason: str) -> None:
    body = reason.encode()
    try:
        conn.sendall(_DECLINED + _LENGTH.pack(len(body)) + body)
    except OSError:
        pass


def _module_roots() -> dict[str, str]:
    """Top-level preloaded module -> the sys.path entry it was imported from."""
    roots = {}
    entries = sorted({os.path.abspath(p) for p in sys.path if p and os.path.isdir(p)}, key=len, reverse=True)
    for name, module in list(sys.modules.items()):
        if "." in name:
            continue
        origin = getattr(module, "__file__", None)
        if not origin:
            continue
        origin = os.path.abspath(origin)
        for entry in entries:
            if origin.startswith(entry + os.sep):
                rest = origin[len(entry) + 1:]
                if rest.split(os.sep)[0] in (name, f"{name}.py") or rest.startswith(name + "."):
                    roots[name] = entry
                break
    return roots


def _top_level_names(entry: str) -> list[str]:
    """The modules and regular packages importable from a sys.path folder."""
    from importlib.machinery import all_suffixes

    try:
        names = os.listdir(entry)
    except OSError:
        return []
    suffixes = tuple(all_suffixes())
    return [n.split(".")[0] for n in names
            if n.endswith(suffixes) or os.path.isfile(os.path.join(entry, n, "__init__.py"))]


def _fresh_random_state(torch_state, threads) -> None:
    """Every global RNG and thread setting as a freshly started interpreter has them.

    Python's and numpy's global generators are seeded from the OS's entropy (as at interpreter
    start; a forked child would otherwise repeat the server's stream), torch's default generator
    is seeded as torch seeds it at start (afresh from entropy in torch 2.14; from its fixed
    default seed in versions that use one), and torch's thread counts those of a fresh process with the
    same variables (the job's own ``--threads`` is applied by the job, as in its own process).
    """
    import random

    random.seed()
    if "numpy" in sys.modules:
        sys.modules["numpy"].random.seed()
    torch = sys.modules["torch"]
    if torch_state is None:  # this torch seeds its default generator afresh in every process
        torch.default_generator.seed()
    else:  # this torch starts every process from the same seed
        torch.default_generator.set_state(torch_state)
    torch.set_num_threads(threads[0])


def _die_with_parent(sig: int) -> None:
    """PR_SET_PDEATHSIG: ``sig`` ends this process when the server ends (Linux)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")


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


def _threads() -> int:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return 0


def serve(path: str | Path, parent_pid: int | None = None, idle_s: float = 900.0) -> None:
    """Listen on ``path``, import :data:`PRELOAD`, and fork a child for each ``debench train`` request.

    The server ends on SIGTERM, when its socket file is removed, or, while no job runs, when
    ``parent_pid`` (the Snakemake process) has ended or nothing arrived for ``idle_s`` seconds.

    Args:
        path: the Unix socket to create (an old one there is replaced), in a folder of mode 0700.
        parent_pid: the process whose end ends the server.
        idle_s: seconds without a job after which the server ends.
    """
    server = _Server(Path(path), parent_pid, idle_s)
    server.server_pid = os.getpid()
    started = time.monotonic()
    server.preload()
    print(f"fork server: {path} ready, {len(PRELOAD)} modules imported in {time.monotonic() - started:.1f} s, "
          f"code {server.code}, {_threads()} threads", file=sys.stderr, flush=True)
    server.serve()
