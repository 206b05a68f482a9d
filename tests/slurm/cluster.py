"""A single-node Slurm cluster for tests: munged, slurmctld and slurmd run as root on this host.

Their state, logs, sockets and the munge key live in a temporary folder. The configuration must
sit at /etc/slurm/slurm.conf, because a Slurm job step clears SLURM_CONF before its srun; the
cluster writes it there and removes it on teardown, and refuses to start where one already
exists, so a real installation is never touched. Without an accounting database `sacct` knows no
job: status polling must use `squeue`, which lists a finished job for MinJobAge seconds; that
must exceed the Slurm executor's longest pause between two polls (180 s). It is an hour here, so
a test can still read every job of its run back afterwards.

Run `python -m tests.slurm.cluster` to bring a cluster up by hand; Ctrl-C tears it down.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

CONFIG_DIR = Path("/etc/slurm")
MARK = "# Written by tests/slurm/cluster.py for a test cluster; removed on teardown.\n"
# The partition placeholders of profiles/slurm/config.yaml, so the profile runs unedited.
CPU_PARTITION = "cpu"
GPU_PARTITION = "gpu"
# CPUs the node announces: the jobs of one workflow level run side by side even on a 2-core
# host (slurmd accepts the figure with SlurmdParameters=config_overrides); the test times nothing.
NODE_CPUS = 8
COMMANDS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scancel", "scontrol", "sinfo")
START_TIMEOUT_S = 30


class SlurmUnavailable(RuntimeError):
    """This host cannot run a test cluster; the message says why."""


@dataclass
class SlurmCluster:
    """A running test cluster.

    Attributes:
        root: Folder of its state, logs, munge key and socket.
        node: Name of its only node (this host's short name).
        cpu_partition: The default partition.
        gpu_partition: The partition whose node has one GPU (a plain file: enough to schedule).
    """

    root: Path
    node: str
    cpu_partition: str = CPU_PARTITION
    gpu_partition: str = GPU_PARTITION

    def jobs(self) -> list[dict[str, str]]:
        """Every job slurmctld still remembers (finished ones for MinJobAge), as scontrol's
        key=value fields: JobId, JobState, Partition, Comment, TresPerJob, ..."""
        listing = run_quietly("scontrol", "--oneliner", "show", "job").stdout
        return [dict(re.findall(r"(\w+)=(\S*)", line)) for line in listing.splitlines() if line]


def why_unavailable() -> str | None:
    """None when a test cluster can start here, else the reason in one sentence."""
    missing = [name for name in COMMANDS if shutil.which(name) is None]
    if missing:
        return (
            f"Slurm is not installed here ({', '.join(missing)} not found); on Debian, "
            "`apt-get install slurm-wlm munge` as root provides it"
        )
    if os.geteuid() != 0:
        return "a test Slurm cluster runs its daemons as root; run the tests as root"
    for name in ("slurm.conf", "gres.conf"):
        path = CONFIG_DIR / name
        if path.exists() and not path.read_text().startswith(MARK):
            return f"{path} already exists; the tests leave a real Slurm configuration alone"
    return None


@contextlib.contextmanager
def single_node_cluster(root: Path) -> Iterator[SlurmCluster]:
    """Start munged, slurmctld and slurmd with their state under `root`; tear all down on exit.

    Raises:
        SlurmUnavailable: When this host cannot run the cluster (see `why_unavailable`), or when
            the node is not idle within 30 s (the daemon logs under `root` say why).
    """
    reason = why_unavailable()
    if reason:
        raise SlurmUnavailable(reason)
    root.mkdir(parents=True, exist_ok=True)
    cluster = SlurmCluster(root=root, node=socket.gethostname().split(".")[0])
    daemons: list[subprocess.Popen] = []
    written: list[Path] = []
    try:
        daemons.append(start_munged(root))
        written += write_configuration(cluster)
        daemons.append(start_daemon(root, "slurmctld", "-D", "-i"))
        daemons.append(start_daemon(root, "slurmd", "-D"))
        wait_until_idle(cluster)
        yield cluster
    finally:
        if written:
            cancel_all_jobs()
        for daemon in reversed(daemons):
            stop(daemon)
        for path in written:
            path.unlink(missing_ok=True)


def start_munged(root: Path) -> subprocess.Popen:
    """munged on a key and socket of its own, so a munged of the host is left alone."""
    munge = root / "munge"
    munge.mkdir(mode=0o711, exist_ok=True)
    key = munge / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o600)
    args = [
        f"--socket={munge / 'munge.socket'}",
        f"--key-file={key}",
        f"--log-file={munge / 'munged.log'}",
        f"--pid-file={munge / 'munged.pid'}",
        f"--seed-file={munge / 'munged.seed'}",
    ]
    daemon = start_daemon(root, "munged", "--foreground", "--force", *args)
    deadline = time.monotonic() + START_TIMEOUT_S
    while not (munge / "munge.socket").exists():
        if daemon.poll() is not None or time.monotonic() > deadline:
            raise SlurmUnavailable(f"munged did not start; see {munge / 'munged.log'}")
        time.sleep(0.1)
    return daemon


def write_configuration(cluster: SlurmCluster) -> list[Path]:
    """Write slurm.conf and gres.conf into /etc/slurm; returns the paths written."""
    root, node = cluster.root, cluster.node
    gpu_file = root / "gpu0"
    gpu_file.touch()
    memory_mb = available_memory_mb()
    controller_port, node_port = free_ports(2)
    slurm_conf = f"""{MARK}ClusterName=onnxstudy-test
SlurmctldHost={node}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={root / "munge" / "munge.socket"}
CredType=cred/munge
SlurmctldPort={controller_port}
SlurmdPort={node_port}
StateSaveLocation={root / "state"}
SlurmdSpoolDir={root / "spool"}
SlurmctldPidFile={root / "slurmctld.pid"}
SlurmdPidFile={root / "slurmd.pid"}
SlurmctldLogFile={root / "slurmctld.log"}
SlurmdLogFile={root / "slurmd.log"}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
MinJobAge=3600
ReturnToService=2
SlurmdParameters=config_overrides
GresTypes=gpu
NodeName={node} NodeAddr=127.0.0.1 CPUs={NODE_CPUS} RealMemory={memory_mb} Gres=gpu:1 State=UNKNOWN
PartitionName={cluster.cpu_partition} Nodes={node} Default=YES MaxTime=INFINITE State=UP
PartitionName={cluster.gpu_partition} Nodes={node} MaxTime=INFINITE State=UP
"""
    gres_conf = f"{MARK}NodeName={node} Name=gpu File={gpu_file}\n"
    for folder in ("state", "spool"):
        (root / folder).mkdir(exist_ok=True)
    CONFIG_DIR.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in (("slurm.conf", slurm_conf), ("gres.conf", gres_conf)):
        path = CONFIG_DIR / name
        path.write_text(text)
        written.append(path)
    return written


def start_daemon(root: Path, name: str, *args: str) -> subprocess.Popen:
    """Start `name` in the foreground, its stdout and stderr in `root`/<name>.out."""
    with open(root / f"{name}.out", "w") as out:
        return subprocess.Popen([name, *args], stdout=out, stderr=subprocess.STDOUT)


def wait_until_idle(cluster: SlurmCluster) -> None:
    """Wait until the node accepts jobs, at most 30 s."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        state = run_quietly("sinfo", "--noheader", "--nodes", cluster.node, "--format=%T").stdout
        if state.strip().split() and all(s == "idle" for s in state.split()):
            return
        time.sleep(0.2)
    raise SlurmUnavailable(
        f"the test node did not become idle within {START_TIMEOUT_S} s; "
        f"see {cluster.root / 'slurmctld.log'} and {cluster.root / 'slurmd.log'}"
    )


def cancel_all_jobs() -> None:
    """Cancel every job of the test cluster and wait, at most 30 s, until none runs."""
    run_quietly("scancel", f"--user={os.getuid()}")
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        active = run_quietly("squeue", "--noheader", "--states=PENDING,RUNNING,COMPLETING")
        if active.returncode != 0 or not active.stdout.strip():
            return
        time.sleep(0.5)


def stop(daemon: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL after 10 s."""
    if daemon.poll() is None:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(timeout=10)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()


def run_quietly(*command: str) -> subprocess.CompletedProcess:
    """Run a Slurm client command; its output is returned, a failure is not raised."""
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def available_memory_mb() -> int:
    """Nine tenths of this host's memory in MB: the node's RealMemory."""
    with open("/proc/meminfo") as meminfo:
        total_kb = next(int(line.split()[1]) for line in meminfo if line.startswith("MemTotal"))
    return total_kb * 9 // 10 // 1024


def free_ports(count: int) -> list[int]:
    """`count` distinct TCP ports free on this host now."""
    with contextlib.ExitStack() as stack:
        probes = [stack.enter_context(socket.socket()) for _ in range(count)]
        for probe in probes:
            probe.bind(("127.0.0.1", 0))
        return [probe.getsockname()[1] for probe in probes]


def main() -> None:
    with (
        tempfile.TemporaryDirectory(prefix="slurm-") as root,
        single_node_cluster(Path(root)) as cluster,
    ):
        print(f"Slurm is up: node {cluster.node}, state in {root}. Ctrl-C tears it down.")
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()


if __name__ == "__main__":
    main()
