"""Helpers of the Ray tests' cluster fixture (tests/compute/conftest.py). One real local Ray cluster per pytest run: a head plus one extra worker node on 127.0.0.1, one CPU each.

Started with `ray start` under private temp dirs and stopped by process id (every process whose command line or
open files point into those dirs), never with `ray stop`, which would also stop other users' clusters.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RAY = Path(sys.executable).with_name("ray")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pids_under(dirs: list[str]) -> list[int]:
    """Processes started for our cluster: their command line or an open file names one of `dirs`."""
    out = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().decode(errors="replace")
            files = [os.readlink(fd) for fd in (proc / "fd").iterdir()] if not any(d in cmd for d in dirs) else []
        except OSError:
            continue
        if any(d in cmd for d in dirs) or any(f.startswith(d) for f in files for d in dirs):
            out.append(int(proc.name))
    return out


def _stop(dirs: list[str]) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in _pids_under(dirs):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        time.sleep(1.0)


@dataclass(frozen=True)
class Cluster:
    address: str  # host:port of the head
    dirs: list[str]  # the nodes' temp dirs: every process of the cluster points into one of them

    def pids(self, title: str = "") -> list[int]:
        """Our cluster's processes whose title starts with `title` (e.g. "ray::_ShardActor")."""
        return [p for p in _pids_under(self.dirs) if _cmdline(p).startswith(title)]


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def start_cluster(nodes: int = 2):
    """A running cluster of `nodes` 1-CPU nodes (generator: stopped by process id when closed); timings printed."""
    dirs = [tempfile.mkdtemp(prefix="pa-ray-", dir="/tmp") for _ in range(nodes)]  # short: Ray's unix socket paths
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"), RAY_USAGE_STATS_ENABLED="0")
    common = ["--num-cpus", "1", "--disable-usage-stats"]
    start = time.perf_counter()
    try:
        subprocess.run(
            [str(RAY), "start", "--head", "--port", str(port), "--temp-dir", dirs[0], "--include-dashboard=false",
             "--node-ip-address", "127.0.0.1", *common],
            env=env, check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        for node_dir in dirs[1:]:
            subprocess.run(
                [str(RAY), "start", "--address", f"127.0.0.1:{port}", "--temp-dir", node_dir,
                 "--node-ip-address", "127.0.0.1", *common],
                env=env, check=True, capture_output=True, timeout=120,
            )  # fmt: skip
        print(f"\nray cluster ({nodes} node(s), 1 CPU each) started in {time.perf_counter() - start:.1f} s")
        yield Cluster(f"127.0.0.1:{port}", dirs)
    finally:
        try:
            import ray

            ray.shutdown()
        finally:
            _stop(dirs)
            for d in dirs:
                shutil.rmtree(d, ignore_errors=True)
