"""RCSB client against a local stand-in server (tests/servers/rcsb_server.py) serving real shared/data files."""

from __future__ import annotations

import csv
import gzip
import json
import random
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from protalign.corpus import rcsb_download
from protalign.corpus.rcsb import download_rcsb, resolve_urls
from protalign.corpus.rcsb_download import BadContent, FetchError, HttpClient, check_fasta, check_structure
from protalign.corpus.rcsb_search import query_body, sample_ids, search_entry_ids
from servers.rcsb_server import SEARCH_PATH, Entry, RcsbServer, entries_from_corpus

N_PDB, N_CIF = 6, 2
OBSOLETE = "1P38"  # obsoleted, replaced by 5UOJ (reference §2.1); still in a stale search snapshot


@pytest.fixture(scope="module")
def rcsb(shared_data: Path):
    entries = entries_from_corpus(shared_data, N_PDB, N_CIF) + [
        Entry(OBSOLETE, obsolete_by="5UOJ"),
        Entry("1BNA", protein_entities=0),  # B-DNA dodecamer: no protein entity, must not be listed
        Entry("AF_AFP68871F1", methodology="computational"),  # computed model: not in experimental results
    ]
    with RcsbServer(entries) as srv:
        yield srv


@pytest.fixture
def server(rcsb: RcsbServer) -> RcsbServer:
    rcsb.reset()
    return rcsb


@pytest.fixture(autouse=True)
def waits(monkeypatch) -> list[float]:
    """Record backoff waits instead of sleeping."""
    recorded: list[float] = []
    monkeypatch.setattr(rcsb_download, "sleep", recorded.append)
    return recorded


def fetch(server: RcsbServer, dest: Path, n: int | None = None, seed: int = 0, **kw) -> dict:
    n = n if n is not None else len(good_ids(server)) + 1  # every entry, plus the obsolete one
    opts = dict(workers=3, retries=3, timeout=5.0, progress=False, backoff_base=0.001, page_rows=4) | kw
    return download_rcsb(dest, n, seed, **server.urls, **opts)


def good_ids(server: RcsbServer) -> list[str]:
    return sorted(i for i, e in server.entries.items() if e.structure is not None)


def report(dest: Path) -> list[dict]:
    return list(csv.DictReader(open(dest / "download_report.tsv"), delimiter="\t"))


def test_query_body_and_sample_are_deterministic():
    body = query_body(20000, 10000)
    assert json.dumps(body, sort_keys=True) == json.dumps(query_body(20000, 10000), sort_keys=True)
    opts = body["request_options"]
    assert opts["paginate"] == {"start": 20000, "rows": 10000}
    assert opts["sort"] == [{"sort_by": "rcsb_entry_container_identifiers.entry_id", "direction": "asc"}]
    assert opts["results_content_type"] == ["experimental"] and body["return_type"] == "entry"
    ids = [f"{d}{c}{c}{c}" for d in "123456789" for c in "ABCDEFGHKM"]
    shuffled = random.Random(5).sample(ids + ids[:7], len(ids) + 7)  # order and duplicates must not matter
    pick = sample_ids(shuffled, 12, seed=3)
    assert pick == sample_ids(ids, 12, seed=3) == sorted(random.Random(3).sample(sorted(ids), 12))
    assert pick != sample_ids(ids, 12, seed=4)
    with pytest.raises(ValueError, match="found only"):
        sample_ids(ids, len(ids) + 1, seed=0)
    with pytest.raises(ValueError):
        sample_ids(ids, 0, seed=0)


def test_search_pages_sort_and_filter(server: RcsbServer):
    client = HttpClient(retries=1, backoff_base=0.001)
    ids, rejected = search_entry_ids(client, server.urls["search_url"], rows=3)
    assert ids == sorted(good_ids(server) + [OBSOLETE]) and rejected == []
    assert "1BNA" not in ids and "AF_AFP68871F1" not in ids
    starts = [b["request_options"]["paginate"]["start"] for b in server.search_bodies]
    assert starts == list(range(0, len(ids), 3))
    assert all(b["query"] == server.search_bodies[0]["query"] for b in server.search_bodies)


def test_full_download_with_mmcif_fallback_and_obsolete(
    server: RcsbServer, tmp_path: Path, shared_data: Path
):
    dest = tmp_path / "rcsb"
    summary = fetch(server, dest)
    good = good_ids(server)
    assert summary["structures"] == len(good) and summary["ids"] == sorted(good + [OBSOLETE])
    for pid in good:
        src = server.entries[pid].structure
        got = dest / "structures" / src.name
        assert got.read_bytes() == src.read_bytes(), pid
        assert (dest / "fasta" / f"{pid}.fasta").read_bytes() == server.entries[pid].fasta.read_bytes()
    cif = [p for p in good if server.entries[p].fmt == "cif"]
    assert len(cif) == N_CIF
    for pid in cif:  # PDB format tried once (404), then mmCIF
        assert server.hits[f"/download/{pid}.pdb.gz"] == 1 and server.hits[f"/download/{pid}.cif.gz"] == 1
    assert sorted(p.name for p in (dest / "structures").iterdir()) == sorted(
        server.entries[p].structure.name for p in good
    )
    # the obsolete id is reported, with what the holdings service says about it
    reason = summary["failed"][OBSOLETE]["structure"]
    assert "HTTP 404" in reason and "REMOVED" in reason and "5UOJ" in reason
    assert "HTTP 404" in summary["failed"][OBSOLETE]["fasta"] and list(summary["failed"]) == [OBSOLETE]
    rows = report(dest)
    assert len(rows) == 2 * (len(good) + 1)
    assert {(r["id"], r["kind"]) for r in rows if r["status"] == "failed"} == {
        (OBSOLETE, "structure"),
        (OBSOLETE, "fasta"),
    }
    assert not (dest / ".partial").exists()


def test_resume_downloads_nothing_and_replaces_corrupt_files(server: RcsbServer, tmp_path: Path):
    dest = tmp_path / "rcsb"
    fetch(server, dest)
    server.reset()
    again = fetch(server, dest)
    touched = {p for p, c in server.hits.items() if c}
    assert all(OBSOLETE.lower() in p.lower() for p in touched), touched  # only the failed id is retried
    assert again["downloaded"] == 0 and again["kept"] == 2 * len(good_ids(server))
    # a truncated gzip and an error page saved as FASTA are detected on resume and fetched again
    victim = good_ids(server)[0]
    sfile = dest / "structures" / server.entries[victim].structure.name
    sfile.write_bytes(sfile.read_bytes()[:100])
    (dest / "fasta" / f"{victim}.fasta").write_text("<html>No server is available</html>\n")
    (dest / ".partial").mkdir()
    (dest / ".partial" / "stale.part").write_text("half")
    server.reset()
    third = fetch(server, dest)
    assert third["downloaded"] == 2
    assert sfile.read_bytes() == server.entries[victim].structure.read_bytes()
    notes = [r["reason"] for r in report(dest) if r["id"] == victim]
    assert all("replaced invalid existing" in n for n in notes), notes
    assert not (dest / ".partial").exists()


def test_429_and_503_bursts_are_retried(server: RcsbServer, tmp_path: Path, waits: list[float]):
    pid, doomed = good_ids(server)[:2]
    path = f"/download/{pid}.{server.entries[pid].fmt}.gz"
    server.inject(path, ("status", 429, "7"), ("status", 503), ("status", 503))
    server.inject(SEARCH_PATH, ("status", 429), ("status", 503))
    server.inject(f"/download/{doomed}.{server.entries[doomed].fmt}.gz", *[("status", 503)] * 4)
    summary = fetch(server, tmp_path / "d", retries=3)
    assert server.hits[path] == 4 and (tmp_path / "d" / "structures" / Path(path).name).exists()
    assert 7.0 in waits  # Retry-After honoured (recorded, not slept)
    assert sorted(summary["failed"]) == sorted([doomed, OBSOLETE]) and list(summary["failed"][doomed]) == [
        "structure"
    ]
    assert summary["failed"][doomed]["structure"].endswith("gave up after 4 attempts: HTTP 503")
    assert (tmp_path / "d" / "fasta" / f"{doomed}.fasta").exists()  # the FASTA of that entry still came


@pytest.mark.parametrize("fault", [("truncate", "short"), ("truncate", "nolength"), ("html200",)])
def test_truncated_or_bogus_body_is_retried_and_never_kept(server: RcsbServer, tmp_path: Path, fault):
    pid, doomed = good_ids(server)[:2]
    path = f"/download/{pid}.{server.entries[pid].fmt}.gz"
    doomed_path = f"/download/{doomed}.{server.entries[doomed].fmt}.gz"
    server.inject(path, fault)
    server.inject(doomed_path, *[fault] * 3)
    dest = tmp_path / "d"
    summary = fetch(server, dest, retries=2)
    assert server.hits[path] == 2
    assert (dest / "structures" / Path(path).name).read_bytes() == server.entries[pid].structure.read_bytes()
    assert server.hits[doomed_path] == 3 and not (dest / "structures" / Path(doomed_path).name).exists()
    assert "gave up after 3 attempts" in summary["failed"][doomed]["structure"]
    assert not (dest / ".partial").exists()


def test_invalid_ids_from_a_hostile_search_are_rejected(server: RcsbServer, tmp_path: Path):
    server.extra_search_hits = ["../../../etc/passwd", "1ABC/../../x", "ABCD", "1abc\n", 42, None, "pdb_0000"]
    dest = tmp_path / "d"
    summary = fetch(server, dest)
    assert len(summary["rejected_ids"]) == 7
    assert sorted(summary["ids"]) == sorted(good_ids(server) + [OBSOLETE])
    assert sum(r["status"] == "rejected" for r in report(dest)) == 7
    assert not any("passwd" in str(p) for p in tmp_path.rglob("*"))
    assert all(p.name.split(".")[0] in summary["ids"] for p in (dest / "structures").iterdir())


def test_extended_ids_and_url_overrides(monkeypatch):
    assert rcsb_download.normalize_id("pdb_00001aki") == "PDB_00001AKI"
    assert rcsb_download.url_id("PDB_00001AKI") == "pdb_00001aki"
    monkeypatch.setenv("PROTALIGN_RCSB_FILES_URL", "http://mirror.test/download/")
    urls = resolve_urls(files=None, search="http://x.test/q")
    assert urls["files"] == "http://mirror.test/download" and urls["search"] == "http://x.test/q"
    assert urls["fasta"] == "https://www.rcsb.org/fasta/entry"
    with pytest.raises(ValueError, match="http"):
        resolve_urls(search="file:///etc/passwd")


def test_env_vars_point_the_client_at_a_server(monkeypatch, server: RcsbServer, tmp_path: Path):
    for name, url in server.urls.items():
        monkeypatch.setenv(f"PROTALIGN_RCSB_{name.removesuffix('_url').upper()}_URL", url)
    summary = download_rcsb(tmp_path / "d", 2, 1, progress=False, backoff_base=0.001, page_rows=5)
    assert summary["universe"] == len(good_ids(server)) + 1 and len(summary["ids"]) == 2
    assert server.hits[SEARCH_PATH] == 2


def test_search_failure_is_an_error(server: RcsbServer, tmp_path: Path):
    urls = server.urls | {"search_url": server.base + "/rcsbsearch/v1/query"}  # v1 is gone: 404
    with pytest.raises(FetchError, match="HTTP 404"):
        download_rcsb(tmp_path / "d", 2, 0, **urls, progress=False, backoff_base=0.001)


def test_stand_in_search_follows_the_reference(server: RcsbServer):
    def post(body: dict) -> tuple[int, bytes]:
        req = urllib.request.Request(server.urls["search_url"], json.dumps(body).encode(), method="POST")
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    code, raw = post({"return_type": "entry"})
    doc = json.loads(raw)
    assert (
        code == 200 and len(doc["result_set"]) == 10 and set(doc["result_set"][0]) == {"identifier", "score"}
    )
    assert post(query_body(1000, 5)) == (204, b"")
    code, raw = post(query_body(0, 20000))
    assert code == 400 and "message" in json.loads(raw)
    code, raw = post({"return_type": "entry", "request_options": {"return_counts": True}})
    assert json.loads(raw)["total_count"] == len(good_ids(server)) + 2  # no query: all but the computed model
    with urllib.request.urlopen(
        server.urls["search_url"] + "?json=" + urllib.parse.quote(json.dumps(query_body(0, 2)))
    ) as r:
        assert len(json.loads(r.read())["result_set"]) == 2


def test_file_checks(shared_data: Path, tmp_path: Path):
    src = sorted((shared_data / "structures").glob("*.pdb.gz"))[0]
    check_structure(src)
    bad = tmp_path / "1ABC.pdb.gz"
    for payload, msg in [
        (src.read_bytes()[:-20], "truncated|corrupt"),
        (gzip.compress(b"<html><title>RCSB Protein Data Bank Error Page</title>"), "HTML"),
        (gzip.compress(b"\n\n"), "empty"),
        (b"not gzip at all", "corrupt"),
    ]:
        bad.write_bytes(payload)
        with pytest.raises(BadContent, match=msg):
            check_structure(bad)
    cif = tmp_path / "1ABC.cif"
    cif.write_text("HEADER    x\n")
    with pytest.raises(BadContent, match="data_"):
        check_structure(cif)
    fa = tmp_path / "1ABC.fasta"
    fa.write_text(">1ABC_1|Chain A|X|Y (1)\nMKV\n>1ABC_2|Chain B|X|Y (1)\n")
    with pytest.raises(BadContent, match="without a sequence"):
        check_fasta(fa)
    fa.write_text(">1ABC_1|Chain A|X|Y (1)\nMKV\n")
    check_fasta(fa)


def test_fetch_source_rcsb_builds_the_corpus(server: RcsbServer, tmp_path, monkeypatch):
    """`protalign fetch --source rcsb` = resumable download into the cache, then ingest like a user's folder."""
    from protalign.corpus import fetch as fetch_cmd
    from protalign.paths import Paths

    for key, url in server.urls.items():
        monkeypatch.setenv(f"PROTALIGN_RCSB_{key.removesuffix('_url').upper()}_URL", url)
    monkeypatch.setenv("PROTALIGN_CACHE", str(tmp_path / "cache"))
    summary = fetch_cmd.run("rcsb", Paths(tmp_path / "repo"), dvc_add=False, n=3, seed=1, log=lambda m: None)
    rows = list(csv.DictReader(open(tmp_path / "repo" / "data" / "manifest.tsv"), delimiter="\t"))
    assert summary["source"] == "rcsb" and summary["rcsb"]["requested"] == 3
    assert len(rows) + summary["rcsb"]["n_failed"] == 3 and {r["source"] for r in rows} == {"rcsb"}
    for r in rows:
        assert (tmp_path / "repo" / "data" / r["structure_file"]).stat().st_size > 0
