"""corpus/local.py: file names -> ids, and the mixed cases of a user's folder that test_fetch does not cover
(some FASTA given and some not, FASTA named after the file stem, an unusable user FASTA, PDB-style `pdbXXXX.ent`
names, uncompressed files, a stray sub-folder)."""

from __future__ import annotations

import csv
import gzip
import shutil

import pytest

from protalign.corpus import fetch, local
from protalign.corpus.fasta import parse_fasta
from protalign.paths import Paths


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("1abc.pdb", ("1abc", ".pdb")),
        ("1ABC.PDB.GZ", ("1ABC", ".pdb.gz")),  # the key of EXTENSIONS, the stem as written
        ("pdb1abc.ent.gz", ("pdb1abc", ".ent.gz")),
        ("model.mmcif", ("model", ".mmcif")),
        ("x.cif.gz", ("x", ".cif.gz")),
        ("notes.txt", None),
        (".pdb", None),
        ("1abc.pdb.bz2", None),
    ],
)
def test_split_extension(name, expected):
    assert local.split_extension(name) == expected


def test_entry_id():
    assert local.entry_id("1abc") == local.entry_id("pdb1abc") == local.entry_id("PDB1ABC") == "1ABC"
    assert local.entry_id("my model (v2)") == "my_model_v2"  # not a PDB id: a sanitised stem, case kept
    assert local.entry_id("abcd") == "abcd"  # four characters but no leading digit: not a PDB id
    with pytest.raises(ValueError, match="no usable id"):
        local.entry_id("()")


def _rows(root):
    with open(root / "data" / "manifest.tsv", newline="") as f:
        return {r["id"]: r for r in csv.DictReader(f, delimiter="\t")}


def test_corpus_layout_with_partial_fasta(shared_data, tmp_path):
    src = tmp_path / "src"
    (src / "structures" / "extra").mkdir(parents=True)
    (src / "fasta").mkdir()
    # gz as shipped; one uncompressed PDB-style name; one mmCIF
    shutil.copyfile(shared_data / "structures" / "11AS.pdb.gz", src / "structures" / "11AS.pdb.gz")
    (src / "structures" / "pdb1a8o.ent").write_bytes(
        gzip.decompress((shared_data / "structures" / "1A8O.pdb.gz").read_bytes())
    )
    shutil.copyfile(shared_data / "structures" / "7CTH.cif.gz", src / "structures" / "7CTH.cif.gz")
    shutil.copyfile(shared_data / "structures" / "154L.pdb.gz", src / "structures" / "154L.pdb.gz")
    shutil.copyfile(shared_data / "fasta" / "11AS.fasta", src / "fasta" / "11AS.fasta")  # by id
    shutil.copyfile(shared_data / "fasta" / "1A8O.fasta", src / "fasta" / "pdb1a8o.fa")  # by stem, .fa
    (src / "fasta" / "154L.fasta").write_text("no records in here\n")  # unusable: derived instead
    # 7CTH has no FASTA: derived from the mmCIF entity tables
    summary = fetch.run(str(src), Paths(tmp_path / "repo"), dvc_add=False, log=lambda m: None)
    rows = _rows(tmp_path / "repo")
    assert set(rows) == {"11AS", "1A8O", "7CTH", "154L"}
    assert {i: r["fasta_origin"] for i, r in rows.items()} == {
        "11AS": "user", "1A8O": "user", "7CTH": "derived", "154L": "derived"
    }  # fmt: skip
    assert summary["n_fasta_user"] == 2 and summary["n_fasta_derived"] == 2
    assert "user FASTA not usable" in rows["154L"]["note"]
    assert (
        rows["1A8O"]["structure_file"] == "structures/1A8O.pdb"
        and rows["1A8O"]["original_file"] == "pdb1a8o.ent"
    )
    assert rows["7CTH"]["structure_file"] == "structures/7CTH.cif.gz" and rows["7CTH"]["format"] == "cif"
    data = tmp_path / "repo" / "data"
    assert (data / "fasta" / "1A8O.fasta").read_bytes() == (shared_data / "fasta" / "1A8O.fasta").read_bytes()
    for ident in ("7CTH", "154L"):  # derived records carry the same entities as the corpus' own FASTA
        got = parse_fasta((data / "fasta" / f"{ident}.fasta").read_text())
        ref = parse_fasta((shared_data / "fasta" / f"{ident}.fasta").read_text())
        assert [(e.sequence, e.chains) for e in got] == [(e.sequence, e.chains) for e in ref], ident
    skipped = (data / fetch.SKIPPED_FILE).read_text()
    assert "structures/extra" in skipped and "sub-folder" in skipped  # seen, reported, not searched


def test_flat_folder_uses_a_fasta_subfolder(shared_data, tmp_path):
    src = tmp_path / "flat"
    (src / "fasta").mkdir(parents=True)
    shutil.copyfile(shared_data / "structures" / "11AS.pdb.gz", src / "11as.pdb.gz")
    shutil.copyfile(shared_data / "structures" / "1A8O.pdb.gz", src / "1A8O.pdb.gz")
    shutil.copyfile(shared_data / "fasta" / "11AS.fasta", src / "fasta" / "11as.fasta")  # by the file's stem
    entries, skipped = local.scan_folder(src)
    assert [(e.id, e.gzipped, e.fasta.name if e.fasta else None) for e in entries] == [
        ("11AS", True, "11as.fasta"), ("1A8O", True, None)
    ]  # fmt: skip
    assert skipped == []  # the fasta/ folder is the FASTA source, not a skipped sub-folder
    fetch.run(str(src), Paths(tmp_path / "repo"), dvc_add=False, log=lambda m: None)
    rows = _rows(tmp_path / "repo")
    assert rows["11AS"]["fasta_origin"] == "user" and rows["1A8O"]["fasta_origin"] == "derived"


def test_empty_or_missing_folder_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a folder"):
        local.scan_folder(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no files found"):
        local.scan_folder(tmp_path / "empty")
