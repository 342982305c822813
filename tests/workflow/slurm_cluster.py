"""A real single-node SLURM cluster for the tests: munged, slurmctld and slurmd, with one fake GPU."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

SLURM_CONF = """\
ClusterName=benloss
SlurmctldHost={host}(127.0.0.1)
SlurmUser=root
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
AuthType=auth/munge
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
ReturnToService=2
# finished jobs stay in scontrol for the tests to inspect (the default 300 s drops early ones of a long run)
MinJobAge=3600
KillWait=10
GresTypes=gpu
MpiDefault=none
NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory} Gres=gpu:1 State=UNKNOWN
PartitionName=gpu Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""
GRES_CONF = "NodeName={host} Name=gpu File=/dev/null\n"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SlurmCluster:
    """Start the daemons in ``root`` (as root), expose ``env`` for clients, stop them by their PIDs."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.pids: list[int] = []
        self.env = os.environ | {"SLURM_CONF": str(self.root / "slurm.conf")}

    def start(self, timeout: float = 60) -> SlurmCluster:
        for folder in ("state", "spool"):
            (self.root / folder).mkdir(parents=True, exist_ok=True)
        host = socket.gethostname().split(".")[0]
        memory = min(8000, os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20 // 2)
        (self.root / "slurm.conf").write_text(
            SLURM_CONF.format(
                host=host,
                root=self.root,
                cpus=os.cpu_count(),
                memory=memory,
                ctld_port=_free_port(),
                slurmd_port=_free_port(),
            )
        )
        (self.root / "gres.conf").write_text(GRES_CONF.format(host=host))
        self._srun_wrapper()
        self._start_munge()
        self._daemon(["slurmctld", "-f", str(self.root / "slurm.conf")], self.root / "slurmctld.pid")
        self._daemon(["slurmd", "-f", str(self.root / "slurm.conf")], self.root / "slurmd.pid")
        deadline = time.time() + timeout
        while time.time() < deadline:
            state = subprocess.run(["sinfo", "-h", "-o", "%T"], env=self.env, capture_output=True, text=True)
            if state.returncode == 0 and state.stdout.strip() in ("idle", "mixed"):
                return self
            time.sleep(1)
        self.stop()
        raise RuntimeError(f"the SLURM node did not come up: {self.logs()}")

    def _srun_wrapper(self) -> None:
        """An ``srun`` first on PATH that knows this cluster's config.

        The plugin's job step drops every SLURM_* variable but a few before its inner ``srun``, SLURM_CONF
        included; real clusters keep their config where clients find it without it (/etc/slurm, configless).
        """
        real = shutil.which("srun")
        folder = self.root / "bin"
        folder.mkdir(exist_ok=True)
        wrapper = folder / "srun"
        wrapper.write_text(f'#!/bin/sh\nSLURM_CONF={self.root / "slurm.conf"} exec {real} "$@"\n')
        wrapper.chmod(0o755)
        self.env["PATH"] = f"{folder}:{self.env['PATH']}"

    def _start_munge(self) -> None:
        """munged as user munge, its files in a folder that user can reach (pytest's tmp is root-only)."""
        run_dir = Path("/run/munge")
        run_dir.mkdir(parents=True, exist_ok=True)
        self.munge_dir = Path(tempfile.mkdtemp(prefix="benloss-munge-"))
        self.munge_dir.chmod(0o755)
        subprocess.run(["chown", "munge:munge", str(run_dir), str(self.munge_dir)], check=True)
        pidfile = self.munge_dir / "munged.pid"
        subprocess.run(
            ["runuser", "-u", "munge", "--", "munged", "--force", f"--pid-file={pidfile}",
             f"--log-file={self.munge_dir / 'munged.log'}", f"--seed-file={self.munge_dir / 'seed'}"],
            check=True,
        )  # fmt: skip
        self._wait_pid(pidfile)

    def _daemon(self, command: list[str], pidfile: Path) -> None:
        subprocess.run(command, env=self.env, check=True)
        self._wait_pid(pidfile)

    def _wait_pid(self, pidfile: Path, timeout: float = 30) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if pidfile.exists() and pidfile.read_text().strip():
                self.pids.append(int(pidfile.read_text().split()[0]))
                return
            time.sleep(0.2)
        raise RuntimeError(f"{pidfile} did not appear: {self.logs()}")

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-2000:]}" for p in self.root.glob("*.log"))

    def stop(self) -> None:
        for pid in reversed(self.pids):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            for _ in range(100):
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.1)
        self.pids.clear()
        if getattr(self, "munge_dir", None):
            shutil.rmtree(self.munge_dir, ignore_errors=True)
