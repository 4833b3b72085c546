"""Structure parsing: real PDB/mmCIF entries from ../shared/data and made-up broken or edge-case files."""

from __future__ import annotations

import gzip
import math
from collections import Counter
from pathlib import Path

import gemmi
import numpy as np
import pytest

from protalign.corpus.store import AA_ORDER
from protalign.corpus.structures import StructureError, parse_structure, residue_kind


def _atom(serial, name, resname, chain, resnum, x, alt=" ", occ=1.0, icode=" ", el=None, rec="ATOM  "):
    el = el or name.strip()[0]
    return (
        f"{rec}{serial:5d} {name:<4s}{alt}{resname:>3s} {chain}{resnum:4d}{icode}   "
        f"{x:8.3f}{0.0:8.3f}{0.0:8.3f}{occ:6.2f}{20.0:6.2f}          {el:>2s}\n"
    )


def _backbone(serial, resname, chain, resnum, x, icode=" ", rec="ATOM  "):
    return "".join(
        _atom(serial + i, n, resname, chain, resnum, x + i * 0.5, icode=icode, rec=rec)
        for i, n in enumerate([" N  ", " CA ", " C  ", " O  "])
    )


def _write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    p = tmp_path / name
    p.write_bytes(text if isinstance(text, bytes) else text.encode())
    return p


def test_made_up_pdb_altloc_icode_hydrogens_ligands(tmp_path):
    text = "HEADER    HYDROLASE                               01-JAN-00   1TST\n"
    text += _backbone(1, "ALA", "A", 1, 0.0)
    text += _atom(5, " H  ", "ALA", "A", 1, 9.0, el="H")  # hydrogen: dropped
    text += _backbone(6, "GLY", "A", 2, 4.0)
    text += _backbone(10, "SER", "A", 2, 8.0, icode="A")  # insertion code: kept, in file order
    # residue 3 with two conformers: B (0.6) beats A (0.4); atoms without altloc always kept
    text += _atom(14, " N  ", "CYS", "A", 3, 12.0)
    text += _atom(15, " CA ", "CYS", "A", 3, 13.0, alt="A", occ=0.4)
    text += _atom(16, " CA ", "CYS", "A", 3, 23.0, alt="B", occ=0.6)
    text += _atom(17, " SG ", "CYS", "A", 3, 14.0, alt="A", occ=0.4, el="S")
    text += _atom(18, " SG ", "CYS", "A", 3, 24.0, alt="B", occ=0.6, el="S")
    # residue 4: tie between altlocs -> the first one
    text += _atom(19, " CA ", "THR", "A", 4, 30.0, alt="A", occ=0.5)
    text += _atom(20, " CA ", "THR", "A", 4, 40.0, alt="B", occ=0.5)
    text += _atom(21, " N  ", "VAL", "A", 5, 50.0)  # no CA: not a graph residue, counted as dropped
    text += "TER\n"
    text += _atom(22, "ZN  ", " ZN", "A", 101, 60.0, rec="HETATM", el="ZN")
    text += _atom(23, " O  ", "HOH", "A", 201, 70.0, rec="HETATM")
    text += "END\n"
    e = parse_structure(_write(tmp_path, "1tst.pdb", text), "1TST")
    s = e.structure
    assert s.resname.tolist() == ["ALA", "GLY", "SER", "CYS", "THR"]
    assert s.resnum.tolist() == [1, 2, 2, 3, 4]
    assert s.sequence == "AGSCT"
    assert e.n_dropped_no_ca == 1
    assert "H" not in s.element.tolist() and "ZN" not in s.element.tolist()
    assert s.ca[3, 0] == pytest.approx(23.0) and s.ca[4, 0] == pytest.approx(30.0)
    cys = slice(s.atom_ptr[3], s.atom_ptr[4])
    assert s.atom_name[cys].tolist() == ["N", "CA", "SG"]
    assert s.xyz[cys][2, 0] == pytest.approx(24.0)
    assert e.classification == "HYDROLASE"
    assert math.isnan(e.resolution)


def test_microheterogeneity_keeps_most_occupied_residue(tmp_path):
    text = _backbone(1, "ALA", "A", 1, 0.0)
    text += "".join(
        _atom(5 + i, n, "SER", "A", 2, 5.0 + i, alt="A", occ=0.3) for i, n in enumerate([" N  ", " CA "])
    )
    text += "".join(
        _atom(7 + i, n, "THR", "A", 2, 9.0 + i, alt="B", occ=0.7) for i, n in enumerate([" N  ", " CA "])
    )
    s = parse_structure(_write(tmp_path, "x.pdb", text), "X").structure
    assert s.resname.tolist() == ["ALA", "THR"]


@pytest.mark.parametrize(
    "name,content,reason",
    [
        ("empty.pdb", b"", "empty file"),
        ("blank.pdb", b"   \n\n", "empty file"),
        ("garbage.pdb", b"this is not a structure\njust some text\n", "not a structure"),
        ("binary.pdb", b"\x00\x01\x02garbage", "binary"),
        (
            "trunc.pdb.gz",
            gzip.compress(_backbone(1, "ALA", "A", 1, 0.0).encode() * 50)[:60],
            "gzip truncated",
        ),
        ("water.pdb", _atom(1, " O  ", "HOH", "A", 1, 0.0, rec="HETATM").encode(), "no protein chain"),
        ("hetatm.pdb", _atom(1, " C1 ", "NAG", "A", 1, 0.0, rec="HETATM").encode(), "no protein chain"),
        (
            "dna.pdb",
            "".join(_atom(i, " P  ", " DA", "B", i, i * 3.0) for i in range(1, 6)).encode(),
            "no protein",
        ),
        (
            "noca.pdb",
            "".join(_atom(i, " N  ", "ALA", "A", i, i * 3.0) for i in range(1, 6)).encode(),
            "no CA",
        ),
        ("bad.cif", b"data_x\nloop_\n_atom_site.id\n_atom_site.Cartn_x\n1\n", "unreadable mmCIF"),
        ("cut.cif", b"data_x\n_entry.id X\n", "not a structure"),
    ],
)
def test_unusable_files_raise_with_reason(tmp_path, name, content, reason):
    with pytest.raises(StructureError) as err:
        parse_structure(_write(tmp_path, name, content), "BAD")
    assert reason in err.value.reason


def test_size_limit_applies_after_decompression(tmp_path):
    p = _write(tmp_path, "a.pdb.gz", gzip.compress(_backbone(1, "ALA", "A", 1, 0.0).encode() * 5000))
    assert p.stat().st_size < 100_000
    with pytest.raises(StructureError, match="too large"):
        parse_structure(p, "A", max_mb=0.5)
    assert (
        len(parse_structure(p, "A", max_mb=5.0).structure) == 1
    )  # 5000 copies of one residue: model 1 keeps it


def test_residue_table_maps_modified_to_parent():
    assert residue_kind("MSE") == (True, "MET", AA_ORDER.index("M"))
    assert residue_kind("ALA") == (True, "ALA", 0)
    assert residue_kind("HOH")[0] is False
    assert residue_kind("DA")[0] is False


# ---- real entries ------------------------------------------------------------------------------------------


def _real(shared_data: Path, entry: str) -> Path:
    hits = sorted((shared_data / "structures").glob(f"{entry}.*"))
    if not hits:
        pytest.skip(f"{entry} not in the shared corpus")
    return hits[0]


def test_real_mse_entry_maps_to_met(shared_data):
    path = _real(shared_data, "1A8O")
    text = gzip.decompress(path.read_bytes()).decode()
    n_mse = len({ln[17:27] for ln in text.splitlines() if ln.startswith("HETATM") and ln[17:20] == "MSE"})
    assert n_mse > 0
    s = parse_structure(path, "1A8O").structure
    assert "MSE" not in set(s.resname.tolist())
    assert Counter(s.resname.tolist())["MET"] >= n_mse
    assert s.sequence.count("M") == Counter(s.resname.tolist())["MET"]
    assert "SE" in set(s.element.tolist())


def test_real_altloc_entry_has_one_copy_per_atom(shared_data):
    path = _real(shared_data, "1BTY")
    s = parse_structure(path, "1BTY").structure
    for r in range(len(s)):
        names = s.atom_name[s.atom_ptr[r] : s.atom_ptr[r + 1]].tolist()
        assert len(names) == len(set(names)), f"residue {r} has duplicate atoms {names}"
    assert not np.isin(s.element, ["H", "D"]).any()
    assert (s.aa <= 20).all() and s.ca.dtype == np.float32


def test_real_insertion_codes_are_kept(shared_data):
    path = _real(shared_data, "1A2C")
    text = gzip.decompress(path.read_bytes()).decode()
    icoded = {(ln[21], ln[22:27]) for ln in text.splitlines() if ln.startswith("ATOM") and ln[26] != " "}
    assert icoded
    s = parse_structure(path, "1A2C").structure
    keys = list(zip(s.chain.tolist(), s.resnum.tolist(), strict=True))
    assert len(keys) > len(set(keys))  # same number with different insertion codes kept as separate residues


def test_real_mmcif_nmr_first_model_only(shared_data):
    path = _real(shared_data, "1AS5")
    e = parse_structure(path, "1AS5")
    st = gemmi.read_structure(str(path))
    assert len(st) > 1
    st.remove_hydrogens()
    model1 = sum(len(r) for ch in st[0] for r in ch if residue_kind(r.name)[0])
    assert len(e.structure.atom_name) == model1
    assert e.method == "SOLUTION NMR" and math.isnan(e.resolution)
    assert e.entities and e.entities[0].name == "CONOTOXIN Y-PIIIE" and e.entities[0].taxid == "41690"


def test_real_mmcif_header(shared_data):
    e = parse_structure(_real(shared_data, "1A7G"), "1A7G")
    assert e.method == "X-RAY DIFFRACTION" and e.resolution == pytest.approx(2.4)
    assert e.chains == ["E"] and e.title.startswith("THE CRYSTAL STRUCTURE")


def test_real_dna_complex_keeps_protein_only(shared_data):
    e = parse_structure(_real(shared_data, "1AAY"), "1AAY")
    assert e.chains == ["A"]
    assert not set(e.structure.resname.tolist()) & {"DA", "DC", "DG", "DT"}
    assert any("ZINC FINGER" in h.name for h in e.entities)


def test_real_pdb_header_ec_and_source(shared_data):
    e = parse_structure(_real(shared_data, "11AS"), "11AS")
    assert e.ec_numbers == ["6.3.1.1"]
    assert e.entities[0].chains == ["A", "B"] and e.entities[0].taxid == "83333"
    assert e.resolution == pytest.approx(2.5) and e.classification == "LIGASE"
