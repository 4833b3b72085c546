"""Helpers for structure tests: hand-made ProteinStructures and real ones parsed with the corpus parser."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from protalign.corpus.store import ProteinStructure
from protalign.corpus.structures import parse_structure


def _make_structure(ca, chain, pid: str = "TOY", aa=None) -> ProteinStructure:
    """A structure with one CA atom per residue (enough for graphs; dihedrals are then all zero)."""
    ca = np.asarray(ca, dtype=np.float32)
    r = len(ca)
    aa = np.arange(r) % 20 if aa is None else np.asarray(aa)
    return ProteinStructure(
        id=pid,
        chain=np.asarray(chain, dtype=str),
        resnum=np.arange(1, r + 1, dtype=np.int32),
        resname=np.array(["ALA"] * r),
        aa=aa.astype(np.int64),
        ca=ca,
        atom_ptr=np.arange(r + 1, dtype=np.int64),
        atom_name=np.array(["CA"] * r),
        element=np.array(["C"] * r),
        xyz=ca.copy(),
    )


def _load_real(shared: Path, pid: str) -> ProteinStructure:
    files = sorted((shared / "structures").glob(f"{pid}.*"))
    if not files:
        pytest.skip(f"{pid} is not in the shared corpus")
    return parse_structure(files[0], pid).structure


# small single-chain entries of the shared corpus (T4 lysozymes, etc.) and one 2-chain complex
SMALL_IDS = ["107L", "154L", "161L", "162L", "163L", "164L", "165L", "171L"]
COMPLEX_ID = "11AS"


@pytest.fixture
def make_structure():
    """Factory: make_structure(ca, chain, pid="TOY", aa=None) -> ProteinStructure with CA atoms only."""
    return _make_structure


@pytest.fixture
def real(shared_data):
    """Factory: real(pid) -> ProteinStructure parsed from the shared corpus (skips where absent)."""
    return lambda pid: _load_real(shared_data, pid)


@pytest.fixture(autouse=True)
def _one_thread():
    """Small graphs run fastest on one thread (and a loaded 2-core box thrashes with more)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
