"""`protalign fetch --source PATH`: byte-identical copies, derived/user FASTA, recorded bad inputs, determinism."""

from __future__ import annotations

import csv
import gzip
import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from protalign.corpus import fetch
from protalign.corpus.fasta import parse_fasta
from protalign.paths import Paths

ENTRIES = {"11AS": "pdb.gz", "1A8O": "pdb.gz", "154L": "pdb.gz", "7CTH": "cif.gz", "1FKI": "cif.gz"}


def _tree_hash(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(folder)).encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()


def _manifest(root: Path) -> list[dict[str, str]]:
    with open(root / "data" / "manifest.tsv", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


@pytest.fixture
def small_corpus(shared_data, tmp_path) -> Path:
    """Five real entries in the corpus layout (structures/ + fasta/)."""
    src = tmp_path / "src"
    (src / "structures").mkdir(parents=True)
    (src / "fasta").mkdir()
    for ident, ext in ENTRIES.items():
        shutil.copyfile(shared_data / "structures" / f"{ident}.{ext}", src / "structures" / f"{ident}.{ext}")
        shutil.copyfile(shared_data / "fasta" / f"{ident}.fasta", src / "fasta" / f"{ident}.fasta")
    return src


def test_folder_with_user_fasta(small_corpus, tmp_path):
    root = tmp_path / "repo"
    summary = fetch.run(str(small_corpus), Paths(root), dvc_add=False, log=lambda m: None)
    assert summary["n_entries"] == 5 and summary["n_fasta_user"] == 5 and summary["n_skipped"] == 0
    rows = _manifest(root)
    assert [r["id"] for r in rows] == sorted(ENTRIES)
    for r in rows:
        ext = ENTRIES[r["id"]]
        assert r["structure_file"] == f"structures/{r['id']}.{ext}" and r["format"] == ext.split(".")[0]
        assert (root / "data" / r["structure_file"]).read_bytes() == (
            small_corpus / "structures" / f"{r['id']}.{ext}"
        ).read_bytes()
        assert (root / "data" / r["fasta_file"]).read_bytes() == (
            small_corpus / "fasta" / f"{r['id']}.fasta"
        ).read_bytes()
        assert r["source"] == "folder" and r["original_file"] == f"{r['id']}.{ext}"
    text = (root / "data" / "manifest.tsv").read_text()
    assert str(tmp_path) not in text  # no absolute paths


def test_folder_without_fasta_derives_it(small_corpus, tmp_path, shared_data):
    shutil.rmtree(small_corpus / "fasta")
    root = tmp_path / "repo"
    summary = fetch.run(str(small_corpus), Paths(root), dvc_add=False, log=lambda m: None)
    assert summary["n_fasta_derived"] == 5
    for ident in ENTRIES:
        got = parse_fasta((root / "data" / "fasta" / f"{ident}.fasta").read_text())
        ref = parse_fasta((shared_data / "fasta" / f"{ident}.fasta").read_text())
        assert [(e.name, e.sequence, e.chains) for e in got] == [(e.name, e.sequence, e.chains) for e in ref]


def test_flat_folder_bad_inputs_recorded(shared_data, tmp_path):
    src = tmp_path / "flat"
    src.mkdir()
    shutil.copyfile(shared_data / "structures" / "11AS.pdb.gz", src / "11as.pdb.gz")
    (src / "1ABC.pdb").write_bytes(gzip.decompress((shared_data / "structures" / "1A8O.pdb.gz").read_bytes()))
    (src / "empty.pdb").write_bytes(b"")
    (src / "notes.pdb").write_text("this is a text file, not a structure\n")
    (src / "trunc.cif.gz").write_bytes((shared_data / "structures" / "7CTH.cif.gz").read_bytes()[:500])
    (src / "README.md").write_text("hello")
    (src / "pdb11as.ent").write_text("HEADER\n")  # duplicate id (sorted after 11as.pdb.gz)
    messages: list[str] = []
    summary = fetch.run(str(src), Paths(tmp_path / "repo"), dvc_add=False, log=messages.append)
    rows = {r["id"]: r for r in _manifest(tmp_path / "repo")}
    assert set(rows) == {"11AS", "1ABC", "empty", "notes", "trunc"}
    assert rows["11AS"]["original_file"] == "11as.pdb.gz" and rows["11AS"]["fasta_origin"] == "derived"
    for bad in ("empty", "notes", "trunc"):
        assert rows[bad]["note"].startswith("unreadable") and rows[bad]["fasta_file"] == ""
        assert (
            tmp_path / "repo" / "data" / rows[bad]["structure_file"]
        ).exists()  # kept for prepare to report
    assert "empty file" in rows["empty"]["note"] and "truncated or corrupt" in rows["trunc"]["note"]
    skipped = (tmp_path / "repo" / "data" / fetch.SKIPPED_FILE).read_text()
    assert "README.md" in skipped and "duplicate id" in skipped
    assert summary["n_skipped"] == 2 and any("duplicate" in m for m in messages)


def test_determinism(small_corpus, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    fetch.run(str(small_corpus), Paths(a), dvc_add=False, log=lambda m: None)
    fetch.run(str(small_corpus), Paths(b), dvc_add=False, log=lambda m: None)
    first = _tree_hash(a / "data")
    assert first == _tree_hash(b / "data")
    fetch.run(str(small_corpus), Paths(a), dvc_add=False, log=lambda m: None)  # re-fetch replaces data/
    assert _tree_hash(a / "data") == first
    assert not [p for p in a.iterdir() if p.name.startswith(".data")]  # temp dir cleaned up


def test_missing_source(tmp_path):
    with pytest.raises(FileNotFoundError):
        fetch.run(str(tmp_path / "nope"), Paths(tmp_path), dvc_add=False)
    assert not (tmp_path / "data").exists()


def test_dvc_add(small_corpus, tmp_path):
    root = tmp_path / "repo"
    root.mkdir()
    subprocess.run([sys.executable, "-m", "dvc", "init", "--no-scm", "-q"], cwd=root, check=True)
    fetch.run(str(small_corpus), Paths(root), log=lambda m: None)
    first = (root / "data.dvc").read_text()
    assert "md5:" in first and "nfiles: 12" in first  # 5 structures + 5 fasta + manifest + skip list
    fetch.run(str(small_corpus), Paths(root), log=lambda m: None)
    assert (root / "data.dvc").read_text() == first
