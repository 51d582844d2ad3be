"""A real single-node Slurm cluster on localhost, started and stopped by a test.

munged, slurmctld and slurmd run as the test's own processes with a
slurm.conf written into a temporary folder; nothing outside that folder is
touched. Needs Debian's slurm-wlm and munge (`make test-slurm` installs them).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "sinfo", "scontrol")


def missing_tools() -> list[str]:
    path = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"
    return [tool for tool in DAEMONS if shutil.which(tool, path=path) is None]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _conf(folder: Path, host: str, cpus: int, memory_mb: int) -> str:
    return f"""
ClusterName=labtest
SlurmctldHost={host}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
AuthType=auth/munge
AuthInfo=socket={folder}/munge.sock
CredType=cred/munge
StateSaveLocation={folder}/state
SlurmdSpoolDir={folder}/spool
SlurmctldPidFile={folder}/slurmctld.pid
SlurmdPidFile={folder}/slurmd.pid
SlurmctldLogFile={folder}/slurmctld.log
SlurmdLogFile={folder}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
ReturnToService=2
MpiDefault=none
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory_mb} State=UNKNOWN
PartitionName=lab Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""


@contextlib.contextmanager
def local_slurm(folder: Path, cpus: int | None = None, memory_mb: int = 16000):
    """Start munged + slurmctld + slurmd; yield the environment (SLURM_CONF) for clients."""
    folder = Path(folder)
    for sub in ("state", "spool"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    key = folder / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    host = socket.gethostname().split(".")[0]
    conf = folder / "slurm.conf"
    conf.write_text(_conf(folder, host, cpus or os.cpu_count() or 1, memory_mb))
    env = {**os.environ, "SLURM_CONF": str(conf), "PATH": os.environ.get("PATH", "") + ":/usr/sbin:/sbin"}
    munged = folder / "munged.pid"
    started: list[str] = []
    try:
        subprocess.run(
            [
                "munged",
                f"--key-file={key}",
                f"--socket={folder}/munge.sock",
                f"--pid-file={munged}",
                f"--log-file={folder}/munged.log",
                f"--seed-file={folder}/munge.seed",
                "--force",
            ],
            env=env,
            check=True,
        )
        started.append("munged")
        subprocess.run(["slurmctld", "-f", str(conf)], env=env, check=True)
        started.append("slurmctld")
        subprocess.run(["slurmd", "-f", str(conf)], env=env, check=True)
        started.append("slurmd")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            state = subprocess.run(["sinfo", "-h", "-o", "%T"], env=env, capture_output=True, text=True)
            if state.stdout.strip() == "idle":
                break
            time.sleep(0.5)
        else:
            raise RuntimeError(f"the local Slurm node did not become idle; see {folder}/slurmctld.log")
        yield env
    finally:
        if "slurmctld" in started:
            _drain(env)
            subprocess.run(["scontrol", "shutdown"], env=env, capture_output=True)
        for pid_file in (folder / "slurmd.pid", folder / "slurmctld.pid", munged):
            _stop(pid_file)


def _drain(env: dict, wait_s: float = 30) -> None:
    """Cancel every job and wait until their steps are gone, so no process outlives the cluster."""
    subprocess.run(["scancel", "--full", "--quiet", "--user", str(os.getuid())], env=env, capture_output=True)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        queue = subprocess.run(["squeue", "-h"], env=env, capture_output=True, text=True)
        steps = subprocess.run(["pgrep", "-f", "slurmstepd"], capture_output=True)
        if not queue.stdout.strip() and steps.returncode != 0:
            return
        time.sleep(0.3)


def _stop(pid_file: Path, wait_s: float = 15) -> None:
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return
    deadline = time.monotonic() + wait_s
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
        while time.monotonic() < deadline:
            os.kill(pid, 0)
            time.sleep(0.2)
        os.kill(pid, signal.SIGKILL)
