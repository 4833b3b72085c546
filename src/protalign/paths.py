"""Where every artifact lives, relative to a repository root. Stages talk only through these files."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

PAIR_SEP = "__"  # model names contain hyphens ("smollm2-135m"), so pairs are joined with a double underscore


def pair_id(llm: str, gdm: str) -> str:
    for name in (llm, gdm):
        if PAIR_SEP in name:
            raise ValueError(f"model name {name!r} must not contain {PAIR_SEP!r}")
    return f"{llm}{PAIR_SEP}{gdm}"


def split_pair(pair: str) -> tuple[str, str]:
    llm, sep, gdm = pair.partition(PAIR_SEP)
    if not sep or not llm or not gdm:
        raise ValueError(f"not a pair id: {pair!r} (expected '<llm>{PAIR_SEP}<gdm>')")
    return llm, gdm


def main_root(start: str | Path | None = None) -> Path:
    """The MAIN repository root, even inside a DVC queued-experiment copy under .dvc/tmp/exps/.

    Caches and the MLflow store must outlive those temporary copies, so they are anchored here.
    """
    start = Path(start or os.getcwd()).resolve()
    override = os.environ.get("PROTALIGN_MAIN_ROOT")
    if override:
        return Path(override).resolve()
    for parent in [start, *start.parents]:
        if parent.name == "exps" and parent.parent.name == "tmp" and parent.parent.parent.name == ".dvc":
            return parent.parent.parent.parent
    try:
        common = subprocess.run(
            ["git", "rev-parse", "--path-format=absolute", "--git-common-dir"],
            cwd=start, capture_output=True, text=True, check=True,
        ).stdout.strip()
        root = Path(common).parent
        if root.exists():
            return root
    except (OSError, subprocess.CalledProcessError):
        pass
    return start


@dataclass(frozen=True)
class Paths:
    """Artifact locations for a repository rooted at `root` (the working copy DVC runs the stage in)."""

    root: Path

    @classmethod
    def here(cls) -> Paths:
        return cls(Path.cwd())

    # corpus (data.dvc)
    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def manifest(self) -> Path:
        return self.data / "manifest.tsv"

    # prepare / split / summarize
    @property
    def prepared(self) -> Path:
        return self.root / "prepared"

    @property
    def proteins(self) -> Path:
        return self.prepared / "proteins.parquet"

    @property
    def structures(self) -> Path:
        return self.prepared / "structures"

    @property
    def skipped(self) -> Path:
        return self.prepared / "skipped.csv"

    @property
    def split(self) -> Path:
        return self.prepared / "split.json"

    @property
    def summaries(self) -> Path:
        return self.prepared / "summaries.parquet"

    @property
    def clusters(self) -> Path:
        return self.prepared / "clusters.parquet"

    @property
    def folds(self) -> Path:
        return self.prepared / "folds.json"

    # embeddings
    def text_embeddings(self, llm: str) -> Path:
        return self.root / "embeddings" / "text" / llm

    def structure_embeddings(self, gdm: str) -> Path:
        return self.root / "embeddings" / "structure" / gdm

    # models
    def structure_model(self, gdm: str) -> Path:
        return self.root / "models" / "structure" / f"{gdm}.pt"

    def heads(self, llm: str, gdm: str) -> Path:
        return self.root / "models" / "heads" / f"{pair_id(llm, gdm)}.pt"

    # metrics / reports
    def metrics(self, llm: str, gdm: str) -> Path:
        return self.root / "metrics" / f"{pair_id(llm, gdm)}.json"

    def per_protein(self, llm: str, gdm: str) -> Path:
        return self.root / "reports" / "per_protein" / f"{pair_id(llm, gdm)}.csv"

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    # cross-validation of the heads (analysis/cv.py); `variant` is "" for the default head, "L<n>" for depth n
    # (one folder per pair: the head_depth stage of a pair writes every depth)
    def cv_metrics(self, llm: str, gdm: str, variant: str = "") -> Path:
        if not variant:
            return self.root / "metrics" / "cv" / f"{pair_id(llm, gdm)}.json"
        return self.depth_metrics(llm, gdm) / f"{variant}.json"

    def cv_per_protein(self, llm: str, gdm: str, variant: str = "") -> Path:
        if not variant:
            return self.reports / "cv" / f"{pair_id(llm, gdm)}.csv"
        return self.depth_reports(llm, gdm) / f"{variant}.csv"

    def cv_seeds(self, llm: str, gdm: str, variant: str = "") -> Path:
        """The re-analysable archive: one row per protein x method x head seed (analysis/cv_summary.py)."""
        if not variant:
            return self.reports / "cv" / f"{pair_id(llm, gdm)}.seeds.csv.gz"
        return self.depth_reports(llm, gdm) / f"{variant}.seeds.csv.gz"

    def depth_metrics(self, llm: str, gdm: str) -> Path:
        return self.root / "metrics" / "depth" / pair_id(llm, gdm)

    def depth_reports(self, llm: str, gdm: str) -> Path:
        return self.reports / "depth" / pair_id(llm, gdm)

    # ignored cache (resume state, downloads, model files); anchored at the MAIN root; PROTALIGN_CACHE overrides
    @property
    def cache(self) -> Path:
        override = os.environ.get("PROTALIGN_CACHE")
        return Path(override).resolve() if override else main_root(self.root) / ".protalign-cache"
