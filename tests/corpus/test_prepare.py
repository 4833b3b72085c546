"""prepare stage on a tiny data/ folder (real entries + made-up broken files) and the packed store round trip."""

from __future__ import annotations

import csv
import gzip
import math
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from params_helpers import default_params
from protalign.corpus import prepare
from protalign.corpus.store import ProteinStructure, StructureStore, write_store
from protalign.errors import UserError
from protalign.paths import Paths

REAL = ["11AS", "1A7G", "1A8O", "1AAY", "1AS5", "5E5Z"]
COLUMNS = [
    "id", "length", "n_chains", "chains", "sequence", "n_entities", "molecule_names", "organisms", "taxids", "entity_chains", "entity_lengths",
    "ec_numbers", "method", "resolution", "title", "classification", "structure_file", "coord_hash", "duplicate_of",
]  # fmt: skip
LENIENT = default_params(prepare={"max_skipped_fraction": 0.5})  # the mini corpus skips 5 of its 10 entries


def _manifest(data: Path, rows: list[tuple[str, str, str, str]]) -> None:
    lines = ["id\tstructure_file\tfasta_file\tformat\tsource"]
    lines += [f"{i}\t{s}\t{f}\t{fmt}\ttest" for i, s, f, fmt in sorted(rows)]
    (data / "manifest.tsv").write_text("\n".join(lines) + "\n")


@pytest.fixture
def mini_root(tmp_path, shared_data) -> Path:
    """A data/ folder: six real entries (one without its FASTA) and four unusable ones."""
    data = tmp_path / "data"
    (data / "structures").mkdir(parents=True)
    (data / "fasta").mkdir()
    rows = []
    for entry in REAL:
        src = next((shared_data / "structures").glob(f"{entry}.*"))
        shutil.copy(src, data / "structures" / src.name)
        fasta = ""
        if entry != "1A8O":  # 1A8O: names must come from the header COMPND/SOURCE
            shutil.copy(shared_data / "fasta" / f"{entry}.fasta", data / "fasta" / f"{entry}.fasta")
            fasta = f"fasta/{entry}.fasta"
        rows.append((entry, f"structures/{src.name}", fasta, "cif" if ".cif" in src.name else "pdb"))
    (data / "structures" / "EMPTY.pdb").write_bytes(b"")
    (data / "structures" / "TRUNC.pdb.gz").write_bytes(gzip.compress(b"ATOM  " * 5000)[:40])
    dna = "".join(
        f"ATOM  {i:5d}  P    DA B{i:4d}    {i * 3.0:8.3f}{0.0:8.3f}{0.0:8.3f}  1.00 20.00           P\n"
        for i in range(1, 6)
    )
    (data / "structures" / "DNA1.pdb").write_text(dna)
    rows += [
        ("EMPTY", "structures/EMPTY.pdb", "", "pdb"),
        ("TRUNC", "structures/TRUNC.pdb.gz", "", "pdb"),
        ("DNA1", "structures/DNA1.pdb", "", "pdb"),
        ("GONE", "structures/GONE.pdb", "", "pdb"),
    ]
    _manifest(data, rows)
    return tmp_path


def test_prepare_writes_all_outputs_with_skip_reasons(mini_root):
    paths = Paths(mini_root)
    counts = prepare.run(LENIENT, paths, workers=1)
    assert counts == {"kept": 5, "skipped": 5, "duplicates": 0}
    table = pq.read_table(paths.proteins)
    assert table.column_names == COLUMNS
    df = table.to_pylist()
    ids = [r["id"] for r in df]
    assert ids == sorted(["11AS", "1A7G", "1A8O", "1AAY", "1AS5"])
    skipped = {r["id"]: r["reason"] for r in csv.DictReader(paths.skipped.open())}
    assert set(skipped) == {"5E5Z", "EMPTY", "TRUNC", "DNA1", "GONE"}
    assert "too few residues" in skipped["5E5Z"] and "empty" in skipped["EMPTY"]
    assert "gzip" in skipped["TRUNC"] and "no protein" in skipped["DNA1"] and "missing" in skipped["GONE"]

    store = StructureStore(paths.structures)
    assert store.ids == ids and len(store) == 5
    by_id = {r["id"]: r for r in df}
    for entry in ids:
        s = store.get(entry)
        assert len(s) == by_id[entry]["length"] == len(by_id[entry]["sequence"])
        assert s.sequence == by_id[entry]["sequence"]
        assert ",".join(dict.fromkeys(s.chain.tolist())) == by_id[entry]["chains"]
    r = by_id["11AS"]
    assert r["molecule_names"] == ["ASPARAGINE SYNTHETASE"] and r["taxids"] == ["83333"]
    assert r["entity_chains"] == ["A, B"] and r["entity_lengths"] == [330]
    assert r["ec_numbers"] == ["6.3.1.1"] and r["n_chains"] == 2 and r["n_entities"] == 1
    assert by_id["1A8O"]["molecule_names"] == ["HIV CAPSID"]  # header fallback (no FASTA)
    assert by_id["1AAY"]["n_entities"] == 1 and "ZINC FINGER" in by_id["1AAY"]["molecule_names"][0]
    assert math.isnan(by_id["1AS5"]["resolution"]) and by_id["1A7G"]["resolution"] == pytest.approx(2.4)


def test_prepare_is_deterministic_across_workers(mini_root, tmp_path_factory):
    other = tmp_path_factory.mktemp("copy")
    shutil.copytree(mini_root / "data", other / "data")
    a, b = Paths(mini_root), Paths(other)
    prepare.run(LENIENT, a, workers=1)
    prepare.run(LENIENT, b, workers=2)
    files = sorted(p.relative_to(a.prepared) for p in a.prepared.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b.prepared) for p in b.prepared.rglob("*") if p.is_file())
    for f in files:
        assert (a.prepared / f).read_bytes() == (b.prepared / f).read_bytes(), f


def test_prepare_limits_are_skips(mini_root):
    params = default_params(prepare={"max_residues": 100, "min_residues": 10, "max_file_mb": 10.0, "max_skipped_fraction": 1})
    prepare.run(params, Paths(mini_root), workers=1)
    skipped = {r["id"]: r["reason"] for r in csv.DictReader(Paths(mini_root).skipped.open())}
    assert "too many residues" in skipped["11AS"]
    params = default_params(prepare={"max_file_mb": 0.0001, "max_skipped_fraction": 1})
    with pytest.raises(ValueError, match="none of"):
        prepare.run(params, Paths(mini_root), workers=1)


def test_skipped_share_above_the_limit_fails_after_writing_the_reasons(mini_root):
    paths = Paths(mini_root)
    with pytest.raises(UserError, match=r"skipped 5 of 10 entries \(50.0%\).*max_skipped_fraction 25%"):
        prepare.run(default_params(prepare={"max_skipped_fraction": 0.25}), paths, workers=1)
    assert {r["id"] for r in csv.DictReader(paths.skipped.open())} == {"5E5Z", "EMPTY", "TRUNC", "DNA1", "GONE"}
    assert not paths.proteins.exists() and not paths.structures.exists()
    assert prepare.run(default_params(prepare={"max_skipped_fraction": 0.5}), paths, workers=1)["kept"] == 5


def test_identical_coordinates_under_two_ids_are_recorded(mini_root):
    data = mini_root / "data"
    for copy in ("ZCOPY", "0COPY"):  # one id sorts after the original, one before
        shutil.copy(data / "structures" / "11AS.pdb.gz", data / "structures" / f"{copy}.pdb.gz")
    with (data / "manifest.tsv").open("a") as f:
        f.write("ZCOPY\tstructures/ZCOPY.pdb.gz\t\tpdb\ttest\n0COPY\tstructures/0COPY.pdb.gz\t\tpdb\ttest\n")
    counts = prepare.run(LENIENT, Paths(mini_root), workers=1)
    rows = {r["id"]: r for r in pq.read_table(Paths(mini_root).proteins).to_pylist()}
    assert counts["duplicates"] == 2
    assert rows["0COPY"]["coord_hash"] == rows["11AS"]["coord_hash"] == rows["ZCOPY"]["coord_hash"]
    assert rows["0COPY"]["duplicate_of"] == "" and rows["11AS"]["duplicate_of"] == rows["ZCOPY"]["duplicate_of"] == "0COPY"
    others = [r["coord_hash"] for i, r in rows.items() if i not in ("0COPY", "11AS", "ZCOPY")]
    assert len(set(others)) == len(others) == 4 and rows["11AS"]["coord_hash"] not in others
    assert all(len(h) == 64 for h in others)


def test_coord_hash_sees_every_coordinate():
    a = _toy("A", 30, 0)
    assert prepare.coord_hash(a) == prepare.coord_hash(_toy("B", 30, 0))  # same coordinates, other id
    for field in ("ca", "xyz"):
        moved = _toy("A", 30, 0)
        getattr(moved, field)[-1, 2] += np.float32(1e-3)
        assert prepare.coord_hash(moved) != prepare.coord_hash(a), field


def test_manifest_errors(tmp_path):
    (tmp_path / "data").mkdir()
    with pytest.raises(FileNotFoundError, match="fetch"):
        prepare.run(default_params(), Paths(tmp_path))
    (tmp_path / "data" / "manifest.tsv").write_text("pdb_id\tstructure_file\n1ABC\tx.pdb\n")
    with pytest.raises(ValueError, match="missing column"):
        prepare.run(default_params(), Paths(tmp_path))


def _toy(entry: str, n_res: int, seed: int) -> ProteinStructure:
    rng = np.random.default_rng(seed)
    per = rng.integers(1, 5, n_res)
    ptr = np.concatenate([[0], np.cumsum(per)])
    return ProteinStructure(
        id=entry,
        chain=np.array(["A"] * (n_res // 2) + ["BB"] * (n_res - n_res // 2)),
        resnum=np.arange(n_res, dtype=np.int32) - 3,
        resname=np.array(["MET", "UNK", "GLY"] * n_res)[:n_res],
        aa=rng.integers(0, 21, n_res),
        ca=rng.normal(size=(n_res, 3)).astype(np.float32),
        atom_ptr=ptr,
        atom_name=np.array(["CA", "OXT", "N", "CB"] * int(ptr[-1]))[: ptr[-1]],
        element=np.array(["C", "O", "N", "SE"] * int(ptr[-1]))[: ptr[-1]],
        xyz=rng.normal(size=(int(ptr[-1]), 3)).astype(np.float32),
    )


def test_store_round_trip(tmp_path):
    entries = [_toy("1AAA", 7, 0), _toy("2BBB", 1, 1), _toy("3CCC", 12, 2)]
    write_store(tmp_path / "s", entries)
    store = StructureStore(tmp_path / "s")
    assert store.ids == ["1AAA", "2BBB", "3CCC"] and "2BBB" in store
    for want in entries:
        got = store.get(want.id)
        for field in ("chain", "resnum", "resname", "aa", "ca", "atom_ptr", "atom_name", "element", "xyz"):
            np.testing.assert_array_equal(getattr(got, field), getattr(want, field), err_msg=field)
        assert got.aa.dtype == np.int64 and got.resnum.dtype == np.int32 and got.xyz.dtype == np.float32
    assert store.get("3CCC").chain_index.tolist() == [0] * 6 + [1] * 6
    with pytest.raises(KeyError, match="9ZZZ"):
        store.get("9ZZZ")


def test_store_rejects_unsorted_and_too_long_strings(tmp_path):
    with pytest.raises(ValueError, match="increasing id order"):
        write_store(tmp_path / "s", [_toy("2BBB", 3, 0), _toy("1AAA", 3, 1)])
    bad = _toy("1AAA", 3, 0)
    bad.chain = np.array(["TOOLONG"] * 3)
    with pytest.raises(ValueError, match="longer than"):
        write_store(tmp_path / "t", [bad])
    assert not (tmp_path / "s").exists() and not (tmp_path / "t").exists()
    with pytest.raises(FileNotFoundError, match="prepare"):
        StructureStore(tmp_path / "s")


@pytest.mark.parametrize("max_mb", [10.0, 0.05])
def test_shipped_bytes_parse_like_the_files(mini_root, max_mb):
    """A Ray worker parses the driver's shipped bytes in memory: every entry (good, empty, truncated gzip, DNA,
    missing, over the size limit, a CRLF FASTA) gives exactly what the local engine gets from the files."""
    data = mini_root / "data"
    fasta = data / "fasta" / "1AAY.fasta"
    fasta.write_bytes(fasta.read_bytes().replace(b"\n", b"\r\n"))
    cfg = default_params(prepare={"max_file_mb": max_mb}).prepare
    rows = prepare.read_manifest(data / "manifest.tsv")
    local = [prepare.process_entry((r, str(data), cfg)) for r in rows]
    shipped = prepare.parse_shard(None, ([(r, prepare.read_inputs(r, data)) for r in rows], cfg))
    assert [(s, i) for s, i, _ in shipped] == [(s, i) for s, i, _ in local]
    for (_, _, a), (_, _, b) in zip(shipped, local, strict=True):
        assert (a is None) == (b is None) and (a is None or prepare.coord_hash(a) == prepare.coord_hash(b))
    statuses = {i[0] if s == "skip" else i["id"]: s for s, i, _ in local}
    assert statuses["GONE"] == "skip" and (statuses["11AS"] == "ok") == (max_mb > 1)
