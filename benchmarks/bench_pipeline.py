"""Wall time and peak memory of every stage of `dvc repro` on a corpus folder (default: ../shared/data).

Runs in a SCRATCH CLONE of this repository (fetch rewrites data.dvc), stage by stage in DAG order, polling the
process tree's resident memory. Then times a no-op `dvc repro`. Prints a Markdown table; writes JSON with --out.

    python benchmarks/bench_pipeline.py [--corpus ../shared/data] [--params params.yaml] [--out results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]


def run_measured(cmd: list[str], cwd: Path, env: dict) -> tuple[float, float, str]:
    """Run `cmd`; return (wall seconds, peak RSS of the whole process tree in MiB, output tail)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak = 0.0
    done = threading.Event()

    def poll() -> None:
        nonlocal peak
        parent = psutil.Process(proc.pid)
        while not done.is_set():
            try:
                procs = [parent, *parent.children(recursive=True)]
                rss = sum(p.memory_info().rss for p in procs if p.is_running())
                peak = max(peak, rss / 2**20)
            except psutil.Error:
                pass
            time.sleep(0.1)

    t = threading.Thread(target=poll, daemon=True)
    t.start()
    out, _ = proc.communicate()
    done.set()
    t.join()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{out[-3000:]}")
    return time.perf_counter() - start, peak, out[-500:]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", default=str(REPO.parent / "shared" / "data"))
    ap.add_argument("--params", default=str(REPO / "params.yaml"))
    ap.add_argument("--workdir", default=None, help="scratch folder (default: a new temp dir)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()

    work = Path(args.workdir or tempfile.mkdtemp(prefix="protalign-bench-"))
    clone = work / "repo"
    if clone.exists():
        shutil.rmtree(clone)
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
    shutil.copy(args.params, clone / "params.yaml")
    env = dict(os.environ, DVC_NO_ANALYTICS="1", MLFLOW_DISABLE_TELEMETRY="true", HF_HUB_OFFLINE="1",
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    env.pop("MLFLOW_TRACKING_URI", None)
    rows = []
    wall, peak, _ = run_measured(["protalign", "fetch", "--source", args.corpus], clone, env)
    rows.append(("fetch (command)", wall, peak))
    stages = subprocess.run(["dvc", "stage", "list", "--name-only"], cwd=clone, env=env, capture_output=True,
                            text=True, check=True).stdout.split()
    total = 0.0
    for stage in stages:
        wall, peak, _ = run_measured(["dvc", "repro", "--single-item", stage], clone, env)
        rows.append((stage, wall, peak))
        total += wall
    noop, _, tail = run_measured(["dvc", "repro"], clone, env)
    rows.append(("no-op dvc repro", noop, 0.0))
    metrics = {p.stem: json.loads(p.read_text()) for p in sorted((clone / "metrics").glob("*.json"))}

    print("| stage | wall (s) | peak RSS (MiB) |\n|---|---:|---:|")
    for name, w, p in rows:
        print(f"| {name} | {w:.1f} | {p:.0f} |")
    print(f"| **dvc repro total** | {total:.1f} | {max(r[2] for r in rows[1:-1]):.0f} |")
    print(json.dumps(metrics, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps({"stages": rows, "repro_total_s": total, "metrics": metrics}, indent=1))


if __name__ == "__main__":
    main()
