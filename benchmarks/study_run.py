"""Study-scale run: the whole pipeline on ../shared/data (815 real entries) in a scratch copy of this repository.

The default `dvc.lock` stays the bundled corpus' run; this script writes plain files under reports/study/ (the
findings, tables, plots, metrics) plus RUN.md with the corpus hash (data.dvc md5), the git commit, the params and
the exact command, so the study-scale evidence is reproducible without touching the DVC outputs.

    python benchmarks/study_run.py [--data ../shared/data] [--params params.yaml] [--keep] [--resume SCRATCH]

--resume reuses a kept scratch copy of an interrupted run: this tree's code and params are copied over it and
committed, and `dvc repro` reruns only what changed or never finished (DVC compares the deps' hashes).
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import yaml

REPO = Path(__file__).resolve().parents[1]
SKIP = ("data/", "prepared/", "embeddings/", "models/", "metrics/", "reports/", "data.dvc", "dvc.lock")
COPY = ("reports", "metrics")


def _copy_tree(dst: Path) -> None:
    """The working tree (tracked + untracked, not ignored), without the default run's outputs."""
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO, capture_output=True, text=True, check=True,
    ).stdout.split("\0")  # fmt: skip
    for rel in filter(None, files):
        if rel.startswith(SKIP) or not (REPO / rel).is_file():
            continue
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, dst / rel)
    # `findings` depends on the git-tracked reports/sweeps/; the default run's sweep is not this corpus' sweep
    sweeps = dst / "reports" / "sweeps"
    sweeps.mkdir(parents=True, exist_ok=True)
    (sweeps / "README.md").write_text(
        "No sweep has been summarised for this corpus (benchmarks/study_run.py).\n"
    )


def absolute_weights(params_text: str, root: Path) -> str:
    """Relative checkpoint paths in structure.*.weights resolved against `root`: the scratch copy lives elsewhere."""
    for cfg in (yaml.safe_load(params_text).get("structure") or {}).values():
        value = cfg.get("weights") if isinstance(cfg, dict) else None
        if isinstance(value, str) and value not in ("trained", "random") and not Path(value).is_absolute():
            resolved = (root / value).resolve()
            params_text = params_text.replace(f"weights: {value}", f"weights: {resolved}")
    return params_text


def env_vs_lock(lock: Path = REPO / "requirements.lock") -> str:
    """This interpreter's packages against requirements.lock (what scripts/install.sh installs), as one RUN.md line."""
    from importlib import metadata

    norm = lambda name: re.sub(r"[-_.]+", "-", name).lower()  # noqa: E731  (PEP 503 names)
    have = {f"{norm(d.metadata['Name'])}=={d.version}" for d in metadata.distributions()}
    have -= {x for x in have if x.startswith(("torch==", "protalign==", "pip==", "setuptools==", "wheel=="))}
    want = {norm(line.split("==")[0]) + "==" + line.split("==")[1].strip()
            for line in lock.read_text().splitlines() if "==" in line and line[0] != "#"}  # fmt: skip
    if have == want:
        return f"environment: the installed packages equal requirements.lock ({len(want)} pinned packages + torch)"
    extra, missing = sorted(have - want), sorted(want - have)
    return f"environment: differs from requirements.lock: not in the lock {extra[:8]}, not installed {missing[:8]}"


def study_env(scratch: Path) -> dict[str, str]:
    """Environment of the scratch copy's commands: CI's offline settings, this interpreter's tools first."""
    env = dict(os.environ, DVC_NO_ANALYTICS="1", MLFLOW_DISABLE_TELEMETRY="true", HF_HUB_OFFLINE="1")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    for key in ("MLFLOW_TRACKING_URI", "DVC_EXP_NAME"):
        env.pop(key, None)
    env["PROTALIGN_MAIN_ROOT"] = str(scratch)  # the study's MLflow runs stay with the scratch copy
    env.setdefault("PROTALIGN_CACHE", str(REPO / ".protalign-cache"))  # reuse converted models and downloads
    return env


def repro_timed(cwd: Path, env: dict) -> tuple[list[tuple[str, float]], float, float]:
    """`dvc repro`, streamed; returns (per-stage wall seconds, total wall, peak RSS MiB of the process tree)."""
    start = time.perf_counter()
    proc = subprocess.Popen(["dvc", "repro"], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, bufsize=1)  # fmt: skip
    peak, done = 0.0, threading.Event()

    def poll() -> None:
        nonlocal peak
        parent = psutil.Process(proc.pid)
        while not done.is_set():
            try:
                rss = sum(
                    p.memory_info().rss for p in [parent, *parent.children(recursive=True)] if p.is_running()
                )
                peak = max(peak, rss / 2**20)
            except psutil.Error:
                pass
            time.sleep(0.2)

    threading.Thread(target=poll, daemon=True).start()
    stages: list[tuple[str, float]] = []
    current, since = None, start
    for line in proc.stdout:
        print(line, end="", flush=True)
        if line.startswith("Running stage '"):
            now = time.perf_counter()
            if current:
                stages.append((current, now - since))
            current, since = line.split("'")[1], now
    proc.wait()
    done.set()
    end = time.perf_counter()
    if current:
        stages.append((current, end - since))
    if proc.returncode:
        raise subprocess.CalledProcessError(proc.returncode, "dvc repro")
    return stages, end - start, peak


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data"))
    ap.add_argument("--params", default=str(REPO / "params.yaml"))
    ap.add_argument("--keep", action="store_true", help="keep the scratch copy")
    ap.add_argument("--resume", type=Path, help="a kept scratch copy of an interrupted run to finish")
    args = ap.parse_args(argv)
    if args.resume:
        args.keep = True
        if not (args.resume / ".git").is_dir() or not (args.resume / "data.dvc").is_file():
            print(f"--resume {args.resume}: not a kept study scratch copy (no .git or data.dvc)", file=sys.stderr)
            return 2
    data = Path(args.data).resolve()
    if not (data / "manifest.tsv").exists():
        print(f"no corpus at {data} (manifest.tsv missing)", file=sys.stderr)
        return 2
    scratch = args.resume.resolve() if args.resume else Path(tempfile.mkdtemp(prefix="protalign-study-"))
    env = study_env(scratch)

    def sh(*cmd: str) -> None:
        print("+", shlex.join(cmd), flush=True)
        subprocess.run(cmd, cwd=scratch, env=env, check=True)

    start = time.time()
    # the commit whose code runs (HEAD may move while the run goes on)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout
    status = subprocess.run(["git", "status", "--porcelain"], cwd=REPO, capture_output=True, text=True).stdout
    dirty = [line[3:] for line in status.splitlines()]
    load0 = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    try:
        _copy_tree(scratch)
        (scratch / "params.yaml").write_text(absolute_weights(Path(args.params).read_text(), REPO))
        if not args.resume:
            sh("git", "init", "-q")
        sh("git", "add", "-A")
        sh("git", "-c", "user.email=study@local", "-c", "user.name=study", "commit", "-q", "--allow-empty", "-m",
           f"study run at {commit.strip()}")  # fmt: skip
        if not args.resume:
            sh("protalign", "fetch", "--source", str(data))
        stages, repro_wall, peak = repro_timed(scratch, env)
        out = REPO / "reports" / "study"
        if out.exists():
            shutil.rmtree(out)
        for name in COPY:
            shutil.copytree(scratch / name, out / name)
        md5 = yaml.safe_load((scratch / "data.dvc").read_text())["outs"][0]["md5"]
        (out / "RUN.md").write_text(
            "# Study-scale run\n\n"
            f"- command: `python benchmarks/study_run.py --data {data} --params {args.params}"
            + (f" --resume {args.resume}`\n" if args.resume else "`\n")
            + f"- corpus: {data} (data.dvc md5 `{md5}`)\n"
            f"- code: git commit `{commit.strip()}` of the repository plus its working tree at run time "
            f"({'clean' if not dirty else 'uncommitted changes: ' + ', '.join(dirty)})\n"
            + (
                f"- resumed {args.resume.name}: stages finished by the interrupted attempt with the same deps were "
                "reused by DVC and are not timed below\n"
                if args.resume
                else ""
            )
            + f"- wall time: {time.time() - start:.0f} s in all; `dvc repro` {repro_wall:.0f} s "
            f"({repro_wall / 60:.1f} min), peak RSS of the process tree {peak:.0f} MiB\n"
            f"- machine: {os.cpu_count()} CPUs, load average before the run {load0}\n\n"
            "## Stage wall times\n\n| stage | wall (s) |\n|---|---:|\n"
            + "".join(f"| {name} | {wall:.1f} |\n" for name, wall in stages)
            + "\n## params.yaml\n\n```yaml\n"
            + (scratch / "params.yaml").read_text()
            + "```\n"
        )
        print(f"study reports in {out}")
    finally:
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)
        else:
            print(f"scratch copy kept at {scratch}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
