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

from debench.forkserver.client import ENV, address, delegate, start, stop

__all__ = ["ENV", "address", "delegate", "start", "stop"]  # the server: debench.forkserver.server
