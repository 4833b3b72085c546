"""RCSB Search API v2: list every experimental protein-containing entry, freeze the list, sample N from a seed.

Why a frozen snapshot: the archive changes weekly, so a seed alone does not give the same sample next month. The
sorted id list, its date and SHA-256 are stored beside the download (`search_snapshot.json`, `search_ids.txt`) and
reused on the next call, so a resumed or repeated fetch samples exactly the same ids without asking the server.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from protalign.corpus.rcsb_download import FetchError, HttpClient, normalize_id
from protalign.storage import write_json, write_text

PAGE_ROWS = 10000  # the service's maximum page size
MAX_TOTAL = 5_000_000  # far above the archive (~250k); a bigger total_count means a broken or hostile server


def query_body(start: int = 0, rows: int = PAGE_ROWS) -> dict:
    """Entries with >= 1 protein entity, experimental only (no computed models, no integrative entries),
    sorted by id so pages are stable; compact results (bare id strings)."""
    return {
        "query": {
            "type": "group",
            "logical_operator": "and",
            "nodes": [
                {
                    "type": "terminal",
                    "service": "text",
                    "parameters": {
                        "attribute": "rcsb_entry_info.polymer_entity_count_protein",
                        "operator": "greater_or_equal",
                        "value": 1,
                    },
                },
                {
                    "type": "terminal",
                    "service": "text",
                    "parameters": {
                        "attribute": "rcsb_entry_info.structure_determination_methodology",
                        "operator": "exact_match",
                        "value": "experimental",
                    },
                },
            ],
        },
        "return_type": "entry",
        "request_options": {
            "results_content_type": ["experimental"],
            "sort": [{"sort_by": "rcsb_entry_container_identifiers.entry_id", "direction": "asc"}],
            "paginate": {"start": start, "rows": rows},
            "results_verbosity": "compact",
        },
    }


def _page(client: HttpClient, search_url: str, start: int, rows: int) -> tuple[int, list]:
    body = json.dumps(query_body(start, rows)).encode()
    status, raw = client.request(search_url, body, {"Content-Type": "application/json"})
    if status == 204:  # no hits, or a page past the end: the body is empty
        return 0, []
    try:
        doc = json.loads(raw)
    except ValueError:
        raise FetchError(f"search answered non-JSON (HTTP {status})") from None
    total = doc.get("total_count") if isinstance(doc, dict) else None
    if not isinstance(total, int) or isinstance(total, bool) or not 0 <= total <= MAX_TOTAL:
        raise FetchError(f"search answer has no valid total_count: {str(total)[:40]}")
    hits = doc.get("result_set") or []
    if not isinstance(hits, list):
        raise FetchError("search answer has a result_set that is not a list")
    return total, hits


def search_entry_ids(
    client: HttpClient, search_url: str, rows: int = PAGE_ROWS
) -> tuple[list[str], list[str]]:
    """(sorted unique valid ids, rejected raw identifiers) over all pages; 204 ends the loop."""
    valid: set[str] = set()
    rejected: list[str] = []
    start, total = 0, None
    while total is None or start < total:
        page_total, hits = _page(client, search_url, start, rows)
        total = page_total if total is None else total
        if not hits:
            break
        for hit in hits:  # compact: "4HHB"; minimal/verbose: {"identifier": "4HHB", "score": 1.0}
            raw = hit.get("identifier") if isinstance(hit, dict) else hit
            try:
                valid.add(normalize_id(raw))
            except ValueError:
                rejected.append(repr(raw)[:80])
        start += rows
    return sorted(valid), rejected


def ids_sha256(ids: list[str]) -> str:
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()


@dataclass(frozen=True)
class Snapshot:
    ids: list[str]
    rejected: list[str]
    sha256: str
    date: str
    reused: bool


def load_or_search(client: HttpClient, dest: Path, search_url: str, rows: int = PAGE_ROWS) -> Snapshot:
    """The frozen id list in `dest` if it was made by the same query and server, else a fresh search."""
    meta_path, ids_path = dest / "search_snapshot.json", dest / "search_ids.txt"
    body = query_body(0, rows)
    body["request_options"].pop("paginate")
    key = {"search_url": search_url, "query": body}
    if meta_path.exists() and ids_path.exists():
        meta = json.loads(meta_path.read_text())
        ids = ids_path.read_text().split()
        if meta.get("key") == key and meta.get("sha256") == ids_sha256(ids):
            return Snapshot(ids, meta.get("rejected", []), meta["sha256"], meta["date"], True)
    ids, rejected = search_entry_ids(client, search_url, rows)
    snap = Snapshot(ids, rejected, ids_sha256(ids), datetime.now(UTC).strftime("%Y-%m-%d"), False)
    write_text(ids_path, "".join(f"{i}\n" for i in ids))
    write_json(
        meta_path,
        {"key": key, "date": snap.date, "count": len(ids), "sha256": snap.sha256, "rejected": rejected},
    )
    return snap


def sample_ids(ids: list[str], n: int, seed: int) -> list[str]:
    """The reference recipe: random.Random(seed).sample over the sorted, de-duplicated list; returned sorted."""
    universe = sorted(set(ids))
    if n < 1:
        raise ValueError(f"--n must be at least 1, got {n}")
    if n > len(universe):
        raise ValueError(f"asked for {n} entries but the search found only {len(universe)}")
    return sorted(random.Random(seed).sample(universe, n))
