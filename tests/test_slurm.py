"""The workflow on a real, one-node SLURM cluster started by the test, against a local run.

The fixture installs Debian's ``slurm-wlm`` and ``munge`` when they are missing (root and apt
needed), writes a ``slurm.conf`` into a temporary folder (linked from ``/etc/slurm/slurm.conf`` while the
test runs, see :meth:`LocalSlurm.link_default_config`), starts ``munged``, ``slurmctld`` and
``slurmd`` by hand (no systemd) on free ports with their own munge socket, and stops each daemon
by its pid afterwards. The cluster has no accounting database, so the executor polls job states
with ``squeue`` (``MinJobAge`` keeps finished jobs visible); the ``sacct`` path is not exercised.

Measured on the shared 2-core CPU machine: 4.4 minutes (local reference run 82 s, SLURM run 176 s,
most of it status-poll back-off and per-job start-up), SLURM 22.05 and plugin 2.8.0.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import skip_missing
from tests.test_workflow import SNAKEMAKE, project_copy

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

DAEMONS = ("/usr/sbin/munged", "/usr/sbin/slurmctld", "/usr/sbin/slurmd")
PACKAGES = ("slurm-wlm", "munge")
#: the two models of the reduced DAG (one experiment, two seeds: four training jobs)
MODELS = ["resnet20", "lm_resnet20"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _install_slurm() -> str | None:
    """Install the packages if missing; the reason SLURM cannot be set up, or None."""
    if all(Path(d).exists() for d in DAEMONS) and shutil.which("sbatch"):
        return None
    if os.geteuid() != 0:
        return "slurm-wlm/munge are not installed and installing them needs root"
    if not shutil.which("apt-get"):
        return "slurm-wlm/munge are not installed and there is no apt-get to install them"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"],
                ["apt-get", "install", "-y", "-q", "--no-install-recommends", *PACKAGES]):
        out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
        if out.returncode != 0:
            return f"`{' '.join(cmd)}` failed: {(out.stdout + out.stderr)[-500:]}"
    return None


class LocalSlurm:
    """munged + slurmctld + slurmd on this machine, configured and owned by one test."""

    def __init__(self, root: Path):
        self.root = root
        self.pids: list[int] = []
        self.etc_link: Path | None = None
        self.env = {**os.environ, "SLURM_CONF": str(root / "slurm.conf")}
        for key in [k for k in self.env if k.startswith("SLURM_") and k != "SLURM_CONF"]:
            del self.env[key]  # a test run inside a SLURM job must not leak its job context

    def write_config(self) -> None:
        r = self.root
        for d in ("state", "spool", "munge", "log"):
            (r / d).mkdir(parents=True, exist_ok=True)
        os.chmod(r / "munge", 0o700)
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
        conf = f"""
ClusterName=debenchtest
SlurmctldHost={socket.gethostname()}(127.0.0.1)
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={r}/munge/munge.socket
StateSaveLocation={r}/state
SlurmdSpoolDir={r}/spool
SlurmctldPidFile={r}/slurmctld.pid
SlurmdPidFile={r}/slurmd.pid
SlurmctldLogFile={r}/log/slurmctld.log
SlurmdLogFile={r}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
SwitchType=switch/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
# finished jobs stay visible to `squeue --states=all` for 10 minutes (no accounting here)
MinJobAge=600
ReturnToService=2
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2
NodeName=localhost NodeAddr=127.0.0.1 CPUs=2 RealMemory={mem // 2} State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
"""
        (r / "slurm.conf").write_text(conf.lstrip())
        key = r / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        os.chmod(key, 0o400)

    def _start(self, cmd: list[str], pidfile: Path) -> None:
        out = subprocess.run(cmd, capture_output=True, text=True, env=self.env, timeout=60)
        if out.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed: {(out.stdout + out.stderr)[-800:]}")
        for _ in range(100):
            if pidfile.exists() and pidfile.read_text().strip():
                self.pids.append(int(pidfile.read_text().split()[0]))
                return
            time.sleep(0.1)
        raise RuntimeError(f"{cmd[0]} wrote no pid file {pidfile}")

    def link_default_config(self) -> None:
        """Point SLURM's default config path at ours, for the executor's nested ``srun``.

        The jobstep of snakemake-executor-plugin-slurm drops every ``SLURM_*`` variable but the
        job's identity before its inner ``srun``, ``SLURM_CONF`` included, so inside a job only
        the default path works. A real cluster has its config there; this test links it for its
        lifetime and refuses to touch a config it did not create.
        """
        etc = Path("/etc/slurm/slurm.conf")
        if etc.is_symlink() and not etc.exists():
            etc.unlink()  # left dangling by an interrupted run of this test
        if etc.exists() or etc.is_symlink():
            raise RuntimeError(f"{etc} exists (a real SLURM config?); not replacing it")
        etc.parent.mkdir(parents=True, exist_ok=True)
        etc.symlink_to(self.root / "slurm.conf")
        self.etc_link = etc

    def start(self) -> None:
        r = self.root
        self.write_config()
        self.link_default_config()
        self._start(["/usr/sbin/munged", "--force", f"--socket={r}/munge/munge.socket",
                     f"--key-file={r}/munge/munge.key", f"--pid-file={r}/munge/munged.pid",
                     f"--log-file={r}/log/munged.log", f"--seed-file={r}/munge/munged.seed"],
                    r / "munge" / "munged.pid")
        self._start(["/usr/sbin/slurmctld", "-i"], r / "slurmctld.pid")
        self._start(["/usr/sbin/slurmd", "-N", "localhost"], r / "slurmd.pid")
        for _ in range(60):
            out = subprocess.run(["sinfo", "-h", "-N", "-o", "%t"], capture_output=True, text=True,
                                 env=self.env)
            if out.stdout.strip() in ("idle", "mix", "alloc"):
                return
            time.sleep(0.5)
        raise RuntimeError(f"node never became idle (sinfo: {out.stdout.strip()!r} {out.stderr.strip()!r})"
                           f"\n{self.logs()}")

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-1500:]}" for p in sorted((self.root / "log").glob("*.log")))

    def stop(self) -> None:
        for pid in reversed(self.pids):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            for _ in range(50):
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.1)
            else:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self.pids.clear()
        if self.etc_link is not None and self.etc_link.is_symlink():
            self.etc_link.unlink()
        self.etc_link = None


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    try:
        import snakemake_executor_plugin_slurm  # noqa: F401
    except ImportError:
        skip_missing("the slurm extra (pip install -e '.[slurm]')")
    reason = _install_slurm()
    if reason:
        skip_missing(f"SLURM, which could not be set up: {reason}")
    # a short path: the munge socket path must fit in a sockaddr_un
    cluster = LocalSlurm(Path(tmp_path_factory.mktemp("slurm")))
    try:
        cluster.start()
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        cluster.stop()
        skip_missing(f"SLURM, whose daemons did not start: {str(exc)[-1500:]}")
    try:
        yield cluster
    finally:
        cluster.stop()


def _small_config(project: Path) -> Path:
    """The smoke preset cut to one experiment, two models, two seeds."""
    cfg = yaml.safe_load((project / "config" / "smoke.yaml").read_text())
    exp = cfg["experiments"]["smoke_discrete"]
    exp["models"] = MODELS
    exp["model_args"] = {m: a for m, a in (exp.get("model_args") or {}).items() if m in MODELS}
    cfg["experiments"] = {"smoke_discrete": exp}
    cfg["seeds"] = [0, 1]
    path = project / "config" / "slurm_test.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _metrics(project: Path) -> dict[str, dict]:
    runs = project / "results" / "smoke" / "runs"
    return {str(p.relative_to(runs)): json.loads(p.read_text()) for p in sorted(runs.rglob("metrics.json"))}


def test_workflow_on_slurm_matches_a_local_run(slurm, tmp_path):
    from debench.registry import list_models  # noqa: F401  (import check before spending minutes)

    (tmp_path / "local").mkdir()
    (tmp_path / "slurm").mkdir()
    local = project_copy(tmp_path / "local")
    on_slurm = project_copy(tmp_path / "slurm")
    # the cluster profile as shipped, sized for this node: no GPU, 2 cores, and one torch thread per
    # job as in the local run (the thread count is part of what makes CPU results bit-identical)
    shutil.copytree(Path(__file__).resolve().parents[1] / "profiles", on_slurm / "profiles")
    profile = on_slurm / "profiles" / "slurm" / "config.yaml"
    settings = yaml.safe_load(profile.read_text())
    settings["set-resources"]["train"].update(gpu=0, cpus_per_task=1, mem_mb="2000 * attempt")
    settings["set-threads"]["train"] = 1
    profile.write_text(yaml.safe_dump(settings))
    config = _small_config(local)
    shutil.copy(config, on_slurm / "config" / config.name)

    t0 = time.time()
    run = subprocess.run(SNAKEMAKE + ["--cores", "2", "--configfile", f"config/{config.name}"], cwd=local,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, (run.stdout + run.stderr)[-4000:]
    t_local = time.time() - t0

    # the cluster profile as a user would run it, with this test cluster's facts on the command line:
    # no accounting database (squeue polling, no account), the partition, quick first status poll
    t0 = time.time()
    cmd = SNAKEMAKE + ["--workflow-profile", "profiles/slurm", "--configfile", f"config/{config.name}",
                       "--jobs", "4", "--slurm-no-account", "--slurm-status-command", "squeue",
                       "--slurm-init-seconds-before-status-checks", "3",
                       "--default-resources", "slurm_partition=debug"]
    run = subprocess.run(cmd, cwd=on_slurm, capture_output=True, text=True, timeout=900, env=slurm.env)
    assert run.returncode == 0, (run.stdout + run.stderr)[-6000:] + slurm.logs()
    t_slurm = time.time() - t0
    log = run.stdout + run.stderr
    assert "Submitted job" in log or "SLURM jobid" in log, log[-3000:]

    want, got = _metrics(local), _metrics(on_slurm)
    assert len(want) == 2 * len(MODELS) and sorted(got) == sorted(want)
    keys = ("test_accuracy", "test_loss", "train_loss", "best_test_accuracy", "steps", "status")
    for name in want:
        for key in keys:
            if key in want[name]:
                assert got[name][key] == want[name][key], (name, key)
    assert (on_slurm / "results" / "smoke" / "report" / "report.html").exists()
    print(f"local run {t_local:.0f} s, SLURM run {t_slurm:.0f} s")
