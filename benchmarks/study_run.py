"""Study-scale run: the whole pipeline on ../shared/data (815 real entries) in a scratch copy of this repository.

The default `dvc.lock` stays the bundled corpus' run; this script writes plain files under reports/study/ (the
findings, tables, plots, metrics) plus RUN.md with the corpus hash (data.dvc md5), the git commit, the params and
the exact command, so the study-scale evidence is reproducible without touching the DVC outputs.

    python benchmarks/study_run.py [--data ../shared/data] [--params params.yaml] [--keep]
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data"))
    ap.add_argument("--params", default=str(REPO / "params.yaml"))
    ap.add_argument("--keep", action="store_true", help="keep the scratch copy")
    args = ap.parse_args(argv)
    data = Path(args.data).resolve()
    if not (data / "manifest.tsv").exists():
        print(f"no corpus at {data} (manifest.tsv missing)", file=sys.stderr)
        return 2
    scratch = Path(tempfile.mkdtemp(prefix="protalign-study-"))
    env = dict(os.environ, DVC_NO_ANALYTICS="1", MLFLOW_DISABLE_TELEMETRY="true", HF_HUB_OFFLINE="1")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    for key in ("MLFLOW_TRACKING_URI", "DVC_EXP_NAME"):
        env.pop(key, None)
    env["PROTALIGN_MAIN_ROOT"] = str(scratch)  # the study's MLflow runs stay with the scratch copy
    env.setdefault("PROTALIGN_CACHE", str(REPO / ".protalign-cache"))  # reuse converted models and downloads

    def sh(*cmd: str) -> None:
        print("+", shlex.join(cmd), flush=True)
        subprocess.run(cmd, cwd=scratch, env=env, check=True)

    start = time.time()
    try:
        _copy_tree(scratch)
        shutil.copy(args.params, scratch / "params.yaml")
        sh("git", "init", "-q")
        sh("git", "add", "-A")
        sh("git", "-c", "user.email=study@local", "-c", "user.name=study", "commit", "-qm", "study run")
        sh("protalign", "fetch", "--source", str(data))
        sh("dvc", "repro")
        out = REPO / "reports" / "study"
        if out.exists():
            shutil.rmtree(out)
        for name in COPY:
            shutil.copytree(scratch / name, out / name)
        md5 = yaml.safe_load((scratch / "data.dvc").read_text())["outs"][0]["md5"]
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout
        (out / "RUN.md").write_text(
            "# Study-scale run\n\n"
            f"- command: `python benchmarks/study_run.py --data {data} --params {args.params}`\n"
            f"- corpus: {data} (data.dvc md5 `{md5}`)\n"
            f"- code: git commit `{commit.strip()}` of the repository plus its working tree at run time\n"
            f"- wall time: {time.time() - start:.0f} s\n\n"
            "## params.yaml\n\n```yaml\n" + (scratch / "params.yaml").read_text() + "```\n"
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
