"""`protalign fetch --source rcsb --n N`: sample N protein entries from RCSB (seeded) and download them.

Writes the folder shape `fetch --source PATH` ingests: `dest/structures/<ID>.<pdb|cif>.gz`, `dest/fasta/<ID>.fasta`,
plus `dest/download_report.tsv` (one row per id and file kind: downloaded / kept / failed + reason), and the frozen
search snapshot (see rcsb_search). Safe to re-run: complete files are checked and kept, missing ones retried.
Base URLs are overridable (arguments, or PROTALIGN_RCSB_{SEARCH,FILES,FASTA,DATA}_URL) so tests and mirrors work.
"""

from __future__ import annotations

import logging
import os
import shutil
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from tqdm import tqdm

from protalign.corpus.rcsb_download import FetchError, HttpClient, Row, fetch_entry
from protalign.corpus.rcsb_search import PAGE_ROWS, Snapshot, load_or_search, sample_ids
from protalign.storage import write_text

log = logging.getLogger(__name__)

DEFAULT_URLS = {
    "search": "https://search.rcsb.org/rcsbsearch/v2/query",
    "files": "https://files.rcsb.org/download",  # + /<id>.<pdb|cif>.gz
    "fasta": "https://www.rcsb.org/fasta/entry",  # + /<id>/download
    "data": "https://data.rcsb.org/rest/v1",  # + /holdings/status/<id> (why a 404: obsolete, replaced by)
}
REPORT_COLUMNS = ("id", "kind", "status", "file", "reason")


def resolve_urls(**given: str | None) -> dict[str, str]:
    """Argument, else env var PROTALIGN_RCSB_<NAME>_URL, else the real RCSB service; no trailing slash."""
    urls = {}
    for name, default in DEFAULT_URLS.items():
        url = given.get(name) or os.environ.get(f"PROTALIGN_RCSB_{name.upper()}_URL") or default
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"{name} URL must be http(s): {url!r}")
        urls[name] = url.rstrip("/")
    return urls


def _clean(text: str) -> str:
    return " ".join(text.split())  # no tabs/newlines inside a TSV cell


def write_report(path: Path, rows: list[Row]) -> None:
    lines = ["\t".join(REPORT_COLUMNS)]
    for r in sorted(rows, key=lambda r: (r.id, r.kind)):
        lines.append("\t".join(_clean(str(getattr(r, c))) for c in REPORT_COLUMNS))
    write_text(path, "\n".join(lines) + "\n")


def _download_entries(
    client: HttpClient, ids: list[str], dest: Path, urls: dict[str, str], workers: int, progress: bool
) -> list[Row]:
    """Structure + FASTA of every id, `workers` at a time; one report row per id and file kind, errors included."""
    for sub in ("structures", "fasta"):
        (dest / sub).mkdir(exist_ok=True)
    partial = dest / ".partial"
    shutil.rmtree(partial, ignore_errors=True)  # leftovers of an interrupted run: never complete files
    partial.mkdir()
    rows: list[Row] = []
    with (
        ThreadPoolExecutor(max_workers=workers) as pool,
        tqdm(total=len(ids), desc="rcsb download", unit="entry", disable=not progress) as bar,
    ):
        futures = {pool.submit(fetch_entry, client, pid, dest, urls): pid for pid in ids}
        for fut in as_completed(futures):
            pid = futures[fut]
            try:
                rows.extend(fut.result())
            except Exception as exc:  # a bug or a disk error must still show up in the report
                rows.extend(
                    Row(pid, kind, "failed", "", f"unexpected error: {exc!r}")
                    for kind in ("structure", "fasta")
                )
            bar.update()
    shutil.rmtree(partial, ignore_errors=True)
    return rows


def _summary(rows: list[Row], snap: Snapshot, ids: list[str], n: int, seed: int, dest: Path) -> dict:
    """The run's summary: counts by status, failures per id and kind, the search snapshot it sampled from."""
    failed: dict[str, dict[str, str]] = {}
    for r in rows:
        if r.status == "failed":
            failed.setdefault(r.id, {})[r.kind] = r.reason
    ok_ids = {r.id for r in rows if r.kind == "structure" and r.status in ("downloaded", "kept")}
    return {
        "requested": n,
        "seed": seed,
        "universe": len(snap.ids),
        "snapshot_date": snap.date,
        "snapshot_sha256": snap.sha256,
        "ids": ids,
        "downloaded": sum(r.status == "downloaded" for r in rows),
        "kept": sum(r.status == "kept" for r in rows),
        "structures": len(ok_ids),
        "failed": failed,
        "rejected_ids": list(snap.rejected),
        "report": str(dest / "download_report.tsv"),
    }


def download_rcsb(
    dest: Path,
    n: int,
    seed: int,
    *,
    search_url: str | None = None,
    files_url: str | None = None,
    fasta_url: str | None = None,
    data_url: str | None = None,
    workers: int = 4,
    retries: int = 5,
    timeout: float = 30.0,
    progress: bool = True,
    backoff_base: float = 1.0,
    page_rows: int = PAGE_ROWS,
) -> dict:
    """Sample `n` entries with `seed` and download structure + FASTA for each; returns a summary dict.

    Failures never stop the run and are never dropped: each is a row in `dest/download_report.tsv` and in
    summary["failed"] ({id: {kind: reason}}). Raises ValueError/FetchError only if the search itself fails.
    """
    if workers < 1 or retries < 0:
        raise ValueError(f"need workers >= 1 and retries >= 0, got {workers}, {retries}")
    dest = Path(dest)
    urls = resolve_urls(search=search_url, files=files_url, fasta=fasta_url, data=data_url)
    client = HttpClient(timeout=timeout, retries=retries, backoff_base=backoff_base, seed=seed)
    dest.mkdir(parents=True, exist_ok=True)
    try:
        snap = load_or_search(client, dest, urls["search"], page_rows)
    except FetchError as exc:
        raise FetchError(f"RCSB search at {urls['search']} failed: {exc}", exc.status) from None
    ids = sample_ids(snap.ids, n, seed)
    log.info(
        "rcsb: sampled %d of %d ids with seed %d (search snapshot %s%s, sha256 %s)",
        n, len(snap.ids), seed, snap.date, ", reused" if snap.reused else "", snap.sha256[:16],
    )  # fmt: skip
    rows = [
        Row(raw, "search", "rejected", "", "invalid PDB id in the search answer") for raw in snap.rejected
    ]
    rows += _download_entries(client, ids, dest, urls, workers, progress)
    write_report(dest / "download_report.tsv", rows)
    summary = _summary(rows, snap, ids, n, seed, dest)
    failed = summary["failed"]
    if failed or snap.rejected:
        log.warning(
            "rcsb: %d ids with failures, %d rejected ids; see %s",
            len(failed), len(snap.rejected), summary["report"],
        )  # fmt: skip
    return summary
