"""Shared fixtures: the real 815-entry corpus beside the checkout (skip with a reason where it is absent)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("PROTALIGN_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path to ../shared/data (real PDB entries); tests that need it skip where it is absent."""
    if not (SHARED_DATA / "manifest.tsv").exists():
        pytest.skip(f"real corpus not found at {SHARED_DATA} (set PROTALIGN_SHARED_DATA); CI has it")
    return SHARED_DATA


# ---------------------------------------------------------------------------------------------------------------
# One end-to-end `dvc repro` per test session, in a scratch copy of the repository, on a few real entries.

import csv  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from dataclasses import dataclass  # noqa: E402

PIPELINE_ENTRIES = 16  # small real proteins from the shared corpus (plus one mmCIF and one broken file)


@dataclass
class PipelineRun:
    root: Path
    env: dict
    repro_log: str
    ids: list[str]

    def run(self, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(cmd, cwd=self.root, env=self.env, capture_output=True, text=True, check=check)


def _scratch_copy(dst: Path) -> None:
    """Copy the working tree (tracked + untracked, not ignored) into `dst` and commit it there."""
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO, capture_output=True, text=True, check=True,
    ).stdout.split("\0")
    for rel in filter(None, files):
        src = REPO / rel
        outputs = ("data/", "prepared/", "embeddings/", "models/", "metrics/", "reports/")
        if not src.is_file() or (rel.startswith(outputs) and not rel.startswith("reports/sweeps/")):
            continue  # DVC outputs are regenerated; reports/sweeps/ is a git-tracked dependency of `findings`
        if rel in ("data.dvc", "dvc.lock"):
            continue
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst / rel)


def _tiny_corpus(shared: Path, dst: Path) -> list[str]:
    """A folder of real structure files: small PDB entries, one mmCIF, and a broken file to be skipped."""
    rows = list(csv.DictReader(open(shared / "manifest.tsv"), delimiter="\t"))
    small = [r for r in rows if r["format"] == "pdb" and r["n_residues"].isdigit() and 40 <= int(r["n_residues"]) <= 200]
    cif = [r for r in rows if r["format"] == "mmcif" and r["n_residues"].isdigit() and int(r["n_residues"]) <= 400]
    picked = small[:: max(1, len(small) // PIPELINE_ENTRIES)][:PIPELINE_ENTRIES] + cif[:1]
    (dst / "structures").mkdir(parents=True)
    (dst / "fasta").mkdir()
    for r in picked:
        shutil.copy(shared / r["structure_file"], dst / r["structure_file"])
        shutil.copy(shared / r["fasta_file"], dst / r["fasta_file"])
    (dst / "structures" / "9BAD.pdb").write_text("HEADER    NOT REALLY A STRUCTURE\nEND\n")
    return sorted(r["pdb_id"] for r in picked)


_SESSION_CACHE: list[Path] = []


def session_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache folder (downloads, converted models) per test session."""
    if not _SESSION_CACHE:
        _SESSION_CACHE.append(tmp_path_factory.mktemp("protalign-cache"))
    return _SESSION_CACHE[0]


@pytest.fixture(scope="session")
def pipeline_run(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> PipelineRun:
    """fetch --source PATH + dvc repro with tests/pipeline_params.yaml, once per session."""
    base = tmp_path_factory.mktemp("pipeline")
    root = base / "repo"
    root.mkdir()
    ids = _tiny_corpus(shared_data, base / "corpus")
    _scratch_copy(root)
    shutil.copy(REPO / "tests" / "pipeline_params.yaml", root / "params.yaml")
    env = dict(os.environ, DVC_NO_ANALYTICS="1", MLFLOW_DISABLE_TELEMETRY="true", HF_HUB_OFFLINE="1",
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    for key in ("MLFLOW_TRACKING_URI", "DVC_EXP_NAME", "PROTALIGN_MAIN_ROOT"):
        env.pop(key, None)
    # share downloads and converted model files across the session (never the developer's own cache)
    env["PROTALIGN_CACHE"] = str(session_cache(tmp_path_factory))
    env["PROTALIGN_AUDIT_OPENS"] = str(base / "audit-opens.jsonl")  # files each command opens (test_dag_audit.py)
    run = PipelineRun(root=root, env=env, repro_log="", ids=ids)
    for cmd in (
        ["git", "init", "-q"],
        ["git", "add", "-A"],
        ["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "scratch"],
        ["protalign", "fetch", "--source", str(base / "corpus")],
    ):
        res = run.run(*cmd, check=False)
        assert res.returncode == 0, f"{cmd} failed:\n{res.stdout}\n{res.stderr}"
    res = run.run("dvc", "repro", check=False)
    assert res.returncode == 0, f"dvc repro failed:\n{res.stdout[-4000:]}\n{res.stderr[-4000:]}"
    run.repro_log = res.stdout + res.stderr
    return run
