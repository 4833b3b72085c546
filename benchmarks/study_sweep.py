"""Study-scale GDM-dimension sweep (finding 6): queued DVC experiments in a kept study_run.py scratch copy.

Each point retrains GearNet-Edge, so it is a `dvc exp run --queue` experiment (only the GearNet-Edge pairs are
recomputed: `structure.gdms=[gearnet_edge]`); the finished study run is the baseline and its [512, 512] is one point.
Afterwards `protalign sweeps` summarises them into reports/sweeps/, `dvc repro` re-derives the findings (F6 now has
its points), and reports/ + metrics/ are copied again to this repository's reports/study/ (RUN.md gets a sweep
section). The README's "Dimension sweep" commands, scripted:

    python benchmarks/study_run.py --keep            # prints "scratch copy kept at DIR"
    python benchmarks/study_sweep.py DIR [--dims 64 128 256 512 512x6]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

from study_run import COPY, REPO, study_env


def _dims(text: str) -> list[int]:
    """'512x6' → [512]*6, '512,512' → [512, 512], '64' → [64]."""
    if "x" in text:
        width, depth = text.split("x")
        return [int(width)] * int(depth)
    return [int(t) for t in text.split(",")]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("scratch", type=Path, help="the scratch copy kept by study_run.py --keep (its run finished)")
    ap.add_argument("--dims", nargs="+", default=["64", "128", "256", "512", "512x6"])
    ap.add_argument("--poll", type=float, default=30.0, help="seconds between `dvc queue status` checks")
    args = ap.parse_args(argv)
    scratch = args.scratch.resolve()
    if not (scratch / "dvc.lock").exists():
        print(f"{scratch}: no dvc.lock (run benchmarks/study_run.py --keep first)", file=sys.stderr)
        return 2
    env = study_env(scratch)

    def sh(*cmd: str, capture: bool = False) -> str:
        print("+", " ".join(cmd), flush=True)
        res = subprocess.run(cmd, cwd=scratch, env=env, check=True, text=True,
                             capture_output=capture)  # fmt: skip
        return res.stdout if capture else ""

    start = time.time()
    sh("git", "add", "-A")
    sh("git", "-c", "user.email=study@local", "-c", "user.name=study", "commit", "-qm", "study baseline",
       "--allow-empty")  # fmt: skip
    names = []
    for d in args.dims:
        dims = _dims(d)
        name = f"gdm{sum(dims)}"
        names.append(name)
        sh("dvc", "exp", "run", "--queue", "-n", name, "-S", "structure.gdms=[gearnet_edge]",
           "-S", f"structure.gearnet_edge.hidden_dims={dims}".replace(" ", ""))  # fmt: skip
    sh("dvc", "queue", "start")
    while True:
        time.sleep(args.poll)
        status = sh("dvc", "queue", "status", capture=True)
        print(status, flush=True)
        if not any(word in status for word in ("Queued", "Running")):
            break
    for line in status.splitlines():  # a failed point's log goes into the output (sweeps lists it as left out)
        failed = [name for name in names if "Failed" in line and name in line.split()]
        for name in failed:
            subprocess.run(["dvc", "queue", "logs", name], cwd=scratch, env=env)
    sweep_wall = time.time() - start
    sh("protalign", "sweeps")
    sh("dvc", "repro")
    out = REPO / "reports" / "study"
    for name in COPY:
        shutil.rmtree(out / name, ignore_errors=True)
        shutil.copytree(scratch / name, out / name)
    with open(out / "RUN.md", "a") as fh:
        fh.write(
            "\n## GDM-dimension sweep (finding 6)\n\n"
            f"- command: `python benchmarks/study_sweep.py SCRATCH --dims {' '.join(args.dims)}` on this run's "
            "scratch copy (queued DVC experiments, `structure.gdms=[gearnet_edge]`, one queue worker)\n"
            f"- wall time of the queue: {sweep_wall:.0f} s ({sweep_wall / 60:.1f} min); summary in "
            "`reports/sweeps/` (its README lists the experiments used)\n\n"
            "```\n" + status.strip() + "\n```\n"
        )
    print(f"sweep reports in {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
