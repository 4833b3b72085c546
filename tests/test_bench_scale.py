"""benchmarks/bench_scale.py: the synthetic corpus moves each copy rigidly (distances kept, coordinates changed) and
re-ids it; the overhead/efficiency arithmetic of the report."""

from __future__ import annotations

import gzip
import os
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
import bench_scale  # noqa: E402

SHARED = Path(os.environ.get("PROTALIGN_SHARED_DATA", REPO.parent / "shared" / "data"))


def _xyz(text: str) -> np.ndarray:
    rows = [line for line in text.splitlines() if line.startswith(("ATOM  ", "HETATM"))]
    return np.array([[float(r[30:38]), float(r[38:46]), float(r[46:54])] for r in rows])


@pytest.mark.skipif(not (SHARED / "manifest.tsv").exists(), reason="../shared/data (the 815-entry corpus) is absent")
def test_synthetic_copies_are_rigid_motions_with_new_ids(tmp_path):
    ids = bench_scale.make_corpus(SHARED, tmp_path, 3)
    assert ids == ["S000000", "S000001", "S000002"]
    manifest = (tmp_path / "manifest.tsv").read_text().splitlines()
    src = manifest[1].split("\t")[4].removeprefix("synthetic:")
    original = _xyz(gzip.decompress((SHARED / "structures" / f"{src}.pdb.gz").read_bytes()).decode())
    moved = _xyz((tmp_path / "structures" / "S000000.pdb").read_text())
    assert moved.shape == original.shape and np.abs(moved - original).max() > 1.0
    d0 = np.linalg.norm(original[:50, None] - original[None, :50], axis=-1)
    d1 = np.linalg.norm(moved[:50, None] - moved[None, :50], axis=-1)
    assert np.abs(d0 - d1).max() < 0.01  # 3-decimal PDB rounding only
    assert (tmp_path / "fasta" / "S000000.fasta").read_text().startswith(">S000000_")


def test_overhead_and_efficiency_arithmetic():
    results = [{"stage": "prepare", "config": c, "n": 100, "wall_s": w}
               for c, w in (("local-1", 10.0), ("ray-1", 11.0), ("ray-2", 6.0))]  # fmt: skip
    s = bench_scale.rates(results)["prepare"]
    assert s["overhead"] == pytest.approx(0.10) and s["efficiency"] == pytest.approx((100 / 6) / (2 * 100 / 11))
    rows = bench_scale.extrapolate({"prepare": s}, sizes=(3600,), workers=(1, 2))
    assert rows == [["prepare", "3,600", f"{3600 / (100 / 11) / 3600:.2f} h",
                     f"{3600 / (100 / 11 * 2 * s['efficiency']) / 3600:.2f} h"]]  # fmt: skip
