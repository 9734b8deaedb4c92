"""Real services for the scale-out tests, started from Debian's packages on this machine: a
single-node Slurm cluster (munge, slurmctld, slurmd with a slurm.conf written here) and a
PostgreSQL server (initdb into a scratch folder). Outside CI a test that needs one is skipped when
the package is missing; in CI (HARNESS_CI=1, set by .ci/run, which installs them) it fails."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.helpers import free_port


def need(*tools: str) -> None:
    """Skip (fail in CI) unless every tool is on PATH or in a sbin folder."""
    missing = [t for t in tools if not which(t)]
    if missing:
        message = f"needs {', '.join(missing)} (Debian: slurm-wlm munge postgresql); .ci/run installs them"
        if os.environ.get("HARNESS_CI"):
            pytest.fail(message)
        pytest.skip(message)


def which(tool: str) -> str | None:
    found = shutil.which(tool) or shutil.which(tool, path="/usr/sbin:/sbin")
    if found is None:
        versions = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{tool}"))  # Debian keeps PostgreSQL's programs here
        found = versions[-1] if versions else None
    return found


def wait_for(check, what: str, seconds: float = 60.0, every: float = 0.5):
    deadline = time.time() + seconds
    while True:
        value = check()
        if value:
            return value
        assert time.time() < deadline, f"{what} did not happen within {seconds:.0f} s"
        time.sleep(every)


@contextlib.contextmanager
def slurm_cluster(folder: Path):
    """A one-node Slurm cluster (2 CPUs' worth of the machine, one partition `debug`) for the
    duration; yields the environment its clients need (SLURM_CONF)."""
    need("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol")
    if os.geteuid() != 0:
        message = "the Slurm daemons are started as root (CI runs as root)"
        if os.environ.get("HARNESS_CI"):
            pytest.fail(message)
        pytest.skip(message)
    host = socket.gethostname().split(".")[0]
    for d in ("state", "spool"):
        (folder / d).mkdir(parents=True, exist_ok=True)
    conf = folder / "slurm.conf"
    conf.write_text(
        "\n".join(
            [
                "ClusterName=harness",
                f"SlurmctldHost={host}(127.0.0.1)",
                "SlurmUser=root",
                "SlurmdUser=root",
                "AuthType=auth/munge",
                f"StateSaveLocation={folder / 'state'}",
                f"SlurmdSpoolDir={folder / 'spool'}",
                f"SlurmctldPidFile={folder / 'slurmctld.pid'}",
                f"SlurmdPidFile={folder / 'slurmd.pid'}",
                f"SlurmctldPort={free_port()}",
                f"SlurmdPort={free_port()}",
                "ProctrackType=proctrack/linuxproc",
                "TaskPlugin=task/none",
                "SchedulerType=sched/backfill",
                "SelectType=select/cons_tres",
                "SelectTypeParameters=CR_Core",
                "SlurmdParameters=config_overrides",
                "ReturnToService=2",
                "MpiDefault=none",
                "JobAcctGatherType=jobacct_gather/none",
                "AccountingStorageType=accounting_storage/none",
                "SchedulerParameters=sched_interval=2",
                "MinJobAge=30",
                "KillWait=5",
                f"SlurmctldLogFile={folder / 'slurmctld.log'}",
                f"SlurmdLogFile={folder / 'slurmd.log'}",
                f"NodeName={host} NodeAddr=127.0.0.1 CPUs=2 RealMemory=8000 State=UNKNOWN",
                f"PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP",
                "",
            ]
        )
    )
    env = {**os.environ, "SLURM_CONF": str(conf)}
    started_munge = None
    if subprocess.run(["sh", "-c", "munge -n | unmunge"], capture_output=True).returncode != 0:
        Path("/run/munge").mkdir(parents=True, exist_ok=True)
        shutil.chown("/run/munge", "munge", "munge")
        started_munge = subprocess.run(["su", "-s", "/bin/sh", "munge", "-c", which("munged")], capture_output=True)
        if started_munge.returncode != 0:
            subprocess.run([which("munged"), "--force"], check=True, capture_output=True)
        wait_for(
            lambda: subprocess.run(["sh", "-c", "munge -n | unmunge"], capture_output=True).returncode == 0,
            "munge answering",
        )
    try:  # a daemon that started is stopped again, whatever fails after it
        subprocess.run([which("slurmctld")], env=env, check=True, capture_output=True)
        subprocess.run([which("slurmd")], env=env, check=True, capture_output=True)
        wait_for(
            lambda: (
                "idle" in subprocess.run(["sinfo", "-h", "-o", "%t"], env=env, capture_output=True, text=True).stdout
            ),
            "the Slurm node going idle",
            seconds=60,
        )
        yield env
    finally:
        subprocess.run(["scancel", "--user", "root"], env=env, capture_output=True)
        for daemon in ("slurmd", "slurmctld"):
            pid = folder / f"{daemon}.pid"
            with contextlib.suppress(OSError, ValueError):
                stop(int(pid.read_text().strip()))


def stop(pid: int, seconds: float = 15.0) -> None:
    """SIGTERM, then SIGKILL if `pid` is still there after `seconds`."""
    os.kill(pid, signal.SIGTERM)
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def postgres_server():
    """A PostgreSQL server of its own (initdb into a scratch folder that the `postgres` user can
    reach, a free port on 127.0.0.1, run as that user when this is root) for the duration; yields
    `connect(dbname) -> URL`, which creates the database."""
    need("initdb", "pg_ctl", "createdb")
    folder = Path(tempfile.mkdtemp(prefix="harness-pg-"))
    data, port = folder / "pgdata", free_port()
    as_user: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        shutil.chown(folder, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    subprocess.run(
        [*as_user, which("initdb"), "-D", str(data), "-U", "harness", "--auth=trust", "-E", "UTF8"],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [
            *as_user,
            which("pg_ctl"),
            "-D",
            str(data),
            "-l",
            str(folder / "server.log"),
            "-w",
            "-t",
            "60",
            "-o",
            f"-p {port} -c listen_addresses=127.0.0.1 -k {folder} -c max_connections=200 -c fsync=off",
            "start",
        ],
        check=True,
        capture_output=True,
    )

    def connect(dbname: str) -> str:
        subprocess.run(
            [which("createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "harness", dbname],
            check=True,
            capture_output=True,
        )
        return f"postgresql://harness@127.0.0.1:{port}/{dbname}"

    try:
        yield connect
    finally:
        subprocess.run([*as_user, which("pg_ctl"), "-D", str(data), "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)
