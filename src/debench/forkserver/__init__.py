"""A fork server for the training jobs of a local DAG: torch, MLflow and debench imported once.

Snakemake runs every job as its own process. A smoke-preset job trains for well under a second
but spends about three seconds importing torch, ``torch._dynamo`` (which ``torch.optim`` pulls in
on the first optimizer) and MLflow's SQL store (``benchmarks/job_overhead.py`` shows the split).
On the 2-core CPU that is most of the smoke DAG's time. So a local workflow may start one server
(``runtime.fork_server``: opt-in, on in the smoke preset; ``debench fork-server``, from the
Snakefile's ``onstart``) that imports all of that once; ``debench train`` then hands its command
line, its process state and its standard streams to the server over a Unix socket, and the server
forks a child that runs exactly ``debench train``. The child writes the job's log on the client's
streams, and the client exits with the child's status, so Snakemake sees an ordinary job. On the
survey protocol a job takes minutes to hours and the server saves ~3 s of it, so there it is off.

The rule: a forked job is the job its own process would run, or it is not forked.

* **Same code.** The server takes a fingerprint of the code it preloads (every file of the
  ``debench`` package, and the installed versions of torch, MLflow, numpy, torchdiffeq, torchsde
  and torchvision) before importing, checks it again after (and starts afresh if the files
  changed meanwhile). Each client sends the fingerprint of its own tree; a job whose tree differs
  runs in its own process. Provenance records the fingerprint of the code that ran
  (``provenance.debench_code``: a process's own, taken when it starts; a child's is the server's,
  equal to its job's).
* **Same process state.** Before the job runs, the child takes the job's environment,
  ``sys.path`` (the job's ``PYTHONPATH``, working folder or script folder; import caches
  cleared), working directory, umask and temp dir (``tempfile.tempdir`` reset, so TMPDIR is read
  again), seeds Python's, numpy's and torch's global generators as a fresh interpreter does, and
  sets torch's thread count to a fresh process's (the job's ``--threads`` then applies as always).
* **Settings that take effect only at interpreter start run in their own process:** a job whose
  value of any ``PYTHON*`` variable but PYTHONPATH (hash seed, allocator, warnings, ...),
  allocator (``MALLOC_*``, ``LD_*``), OpenMP/BLAS (``OMP_*``, ``MKL_*``, ``OPENBLAS_*``, ...),
  ``TORCH*``/``PYTORCH_*`` or locale variable differs from the server's, whose CPU affinity
  differs, whose ``sys.path`` lacks a folder a preloaded module came from, or whose extra
  ``sys.path`` folders hold a module of the same name as a preloaded one. The Snakefile starts
  the server with the thread variables Snakemake gives a train job, so the jobs of a run match.
* **No lost results, no orphans.** The child holds the connection to its client and sends its
  exit status itself; the server sends it too for a child killed by a signal. A child dies with
  its server (``PR_SET_PDEATHSIG``) and with its cancelled client (the server ends its process
  group when the client's connection closes), so a killed server leaves no job training
  unwatched: the client reports a failure, the job's outputs are not yet written, and the rerun
  resumes from its checkpoint.
* **Only its owner, only training.** The socket lives in a folder of mode 0700; the server checks
  the peer's uid (``SO_PEERCRED``) before reading a byte of a request, and serves ``debench
  train`` only. A malformed request is answered with an error and the server goes on; requests
  are read without blocking, so a stalled connection delays no other.

The server is not single-threaded after preloading (OpenBLAS's pool and the allocator's threads,
2-3 in all; its log line "ready" counts them): those libraries re-initialise their pools in a
forked child. It never initialises CUDA, an MLflow store or torch's own thread pool, so each child
creates its own after the fork. Linux only; elsewhere every job runs in its own process.

Without a server (``fork_server: false``, a job on a cluster node, a test calling ``debench
train``, a server that is gone or declines the job) the client trains in its own process.
"""

from __future__ import annotations

from debench.forkserver.client import ENV, address, delegate, start, stop

__all__ = ["ENV", "address", "delegate", "start", "stop"]  # the server: debench.forkserver.server
