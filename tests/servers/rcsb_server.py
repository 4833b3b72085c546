"""A local stand-in for the RCSB services the downloader uses (reference: shared/reference/rcsb-api.md, §7).

Same URL paths and formats as the real hosts, all on one 127.0.0.1 port:
  POST/GET /rcsbsearch/v2/query          Search API v2 (entry return type; the attributes the client needs)
  GET /download/<id>.<pdb|cif>[.gz]      .gz = raw gzip bytes + Content-Length; plain = no Content-Length
  GET /fasta/entry/<id>[/download]       RCSB FASTA, one record per polymer entity
  GET /rest/v1/holdings/current/entry_ids, /rest/v1/holdings/status/<id>
Content comes from real files (shared/data). Faults are injected per path (429/503 bursts with Retry-After,
truncated bodies, an HTML page with status 200) and every request is counted, so tests can assert on traffic.
"""

from __future__ import annotations

import collections
import csv
import gzip
import hashlib
import json
import re
import threading
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

SEARCH_PATH = "/rcsbsearch/v2/query"
ENTRY_ID_ATTRS = ("rcsb_entry_container_identifiers.entry_id", "rcsb_id")
HTML_404 = b"<html><head><title>404 Not Found</title></head><body><h1>Not Found</h1></body></html>\n"
HTML_503 = b"<html><body><h1>503 Service Unavailable</h1>\nNo server is available to handle this request.\n</body></html>\n"


@dataclass
class Entry:
    """One archive entry as the stand-in knows it; `structure` is a gzip file (.pdb.gz or .cif.gz) or None."""

    id: str
    structure: Path | None = None
    fasta: Path | None = None
    protein_entities: int = 1
    methodology: str = "experimental"  # experimental | integrative | computational
    obsolete_by: str | None = None  # obsolete: files gone, holdings say REMOVED, replaced by this id

    @property
    def fmt(self) -> str | None:
        return None if self.structure is None else ("cif" if ".cif" in self.structure.suffixes else "pdb")

    def attrs(self) -> dict:
        return {
            "rcsb_entry_info.polymer_entity_count_protein": self.protein_entities,
            "rcsb_entry_info.structure_determination_methodology": self.methodology,
            "pdbx_database_status.pdb_format_compatible": "Y" if self.fmt == "pdb" else "N",
            "rcsb_entry_container_identifiers.entry_id": self.id,
            "rcsb_id": self.id,
        }


def entries_from_corpus(shared: Path, n_pdb: int, n_cif: int) -> list[Entry]:
    """The smallest real PDB-format and mmCIF-only entries of shared/data (small = fast tests)."""
    rows = list(csv.DictReader(open(shared / "manifest.tsv"), delimiter="\t"))
    rows.sort(key=lambda r: ((shared / r["structure_file"]).stat().st_size, r["pdb_id"]))
    pdb = [r for r in rows if ".pdb" in r["structure_file"]][:n_pdb]
    cif = [r for r in rows if ".cif" in r["structure_file"]][:n_cif]
    # 7 corpus entries have no FASTA (nothing to derive it from): the stand-in answers 404 for those
    return [
        Entry(
            r["pdb_id"], shared / r["structure_file"], shared / r["fasta_file"] if r["fasta_file"] else None
        )
        for r in pdb + cif
    ]


class SearchError(Exception):
    pass


def _match(node: dict | None, attrs: dict) -> bool:
    if node is None:
        return True
    if node.get("type") == "group":
        results = [_match(n, attrs) for n in node.get("nodes") or []]
        if node.get("logical_operator") not in ("and", "or") or not results:
            raise SearchError("group needs logical_operator and|or and nodes")
        return all(results) if node["logical_operator"] == "and" else any(results)
    if node.get("type") != "terminal" or node.get("service") != "text":
        raise SearchError("the stand-in supports text terminals and groups only")
    p = node.get("parameters")
    if p is None:  # a terminal without parameters matches every document
        return True
    if p.get("attribute") not in attrs:
        raise SearchError(f"unknown attribute {p.get('attribute')!r}")
    have, op, want = attrs[p["attribute"]], p.get("operator"), p.get("value")
    if op == "exact_match":
        hit = str(have).lower() == str(want).lower()
    elif op == "in":
        hit = have in (want or [])
    elif op == "exists":
        hit = have is not None
    elif op in ("equals", "greater", "greater_or_equal", "less", "less_or_equal"):
        if not isinstance(want, int | float):
            raise SearchError(f"{op} needs a number")
        hit = {"equals": have == want, "greater": have > want, "greater_or_equal": have >= want,
               "less": have < want, "less_or_equal": have <= want}[op]  # fmt: skip
    else:
        raise SearchError(f"unsupported operator {op!r}")
    return not hit if p.get("negation") else hit


class RcsbServer:
    """Start with `start()` (or as a context manager); `urls` gives the base URLs the client takes."""

    def __init__(self, entries: list[Entry]):
        self.entries = {e.id.upper(): e for e in entries}
        self.extra_search_hits: list[object] = []  # appended to search answers (to test a hostile server)
        self.hits: collections.Counter[str] = collections.Counter()
        self.search_bodies: list[dict] = []
        self._faults: dict[str, collections.deque] = collections.defaultdict(collections.deque)
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None

    # -- control ------------------------------------------------------------------------------------------------
    def inject(self, path: str, *faults: tuple) -> None:
        """Queue faults for `path`, one per request: ("status", code[, retry_after]), ("truncate", "short" |
        "nolength"), ("html200",)."""
        with self._lock:
            self._faults[path].extend(faults)

    def reset(self) -> None:
        with self._lock:
            self.hits.clear()
            self._faults.clear()
            self.search_bodies.clear()
        self.extra_search_hits = []

    def start(self) -> RcsbServer:
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._httpd:
            self._httpd.shutdown()
            self._httpd.server_close()

    def __enter__(self) -> RcsbServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def base(self) -> str:
        assert self._httpd, "server not started"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    @property
    def urls(self) -> dict[str, str]:
        b = self.base
        return {"search_url": b + SEARCH_PATH, "files_url": b + "/download", "fasta_url": b + "/fasta/entry",
                "data_url": b + "/rest/v1"}  # fmt: skip

    def _take_fault(self, path: str) -> tuple | None:
        with self._lock:
            self.hits[path] += 1
            q = self._faults.get(path)
            return q.popleft() if q else None

    # -- search ----------------------------------------------------------------------------------------------------
    def search(self, body: dict) -> tuple[int, dict | None]:
        self.search_bodies.append(body)
        if body.get("return_type") != "entry":
            raise SearchError("return_type is required (the stand-in serves 'entry')")
        opts = body.get("request_options") or {}
        types = opts.get("results_content_type") or ["experimental"]
        kind = {"computational": "computational"}  # integrative entries count as experimental content
        hits = [e for e in self.entries.values() if kind.get(e.methodology, "experimental") in types]
        hits = [e for e in hits if _match(body.get("query"), e.attrs())]
        ids = [e.id for e in hits] + list(self.extra_search_hits)
        sort = opts.get("sort") or [{"sort_by": "score", "direction": "desc"}]
        key = sort[0].get("sort_by")
        if key in ENTRY_ID_ATTRS:
            ids.sort(key=str, reverse=sort[0].get("direction") == "desc")
        elif key == "score":  # equal scores: "near-arbitrary order" for attribute filters (stable here)
            ids.sort(key=lambda i: hashlib.sha1(str(i).encode()).hexdigest())
        else:
            raise SearchError(f"cannot sort by {key!r}")
        query_id = (body.get("request_info") or {}).get("query_id") or str(uuid.uuid4())
        if opts.get("return_counts"):
            if "paginate" in opts:
                raise SearchError("return_counts cannot be combined with paginate")
            return 200, {"query_id": query_id, "result_type": "entry", "total_count": len(ids)}
        if opts.get("return_all_hits"):
            if "paginate" in opts:
                raise SearchError("return_all_hits cannot be combined with paginate")
            page, start = ids, 0
        else:
            pg = opts.get("paginate") or {}
            start, rows = int(pg.get("start", 0)), int(pg.get("rows", 10))
            if rows > 10000 or rows < 0 or start < 0:
                raise SearchError(f"paginate rows must be 0..10000, got {rows}")
            page = ids[start : start + rows]
        if not ids or start >= len(ids):
            return 204, None
        verbosity = opts.get("results_verbosity", "minimal")
        result = page if verbosity == "compact" else [{"identifier": i, "score": 1.0} for i in page]
        return 200, {
            "query_id": query_id,
            "result_type": "entry",
            "total_count": len(ids),
            "result_set": result,
        }


def _handler(srv: RcsbServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "rcsb-standin/1"

        def log_message(self, *args) -> None:  # keep pytest output clean
            pass

        def _send(self, code: int, body: bytes, ctype: str, length: bool = True, headers: dict | None = None):
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            if length:
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _json(self, code: int, obj: object) -> None:
            self._send(code, json.dumps(obj, indent=2).encode(), "application/json")

        def do_POST(self) -> None:
            self._route(self.rfile.read(int(self.headers.get("Content-Length") or 0)))

        def do_GET(self) -> None:
            self._route(None)

        def _route(self, payload: bytes | None) -> None:
            parts = urlsplit(self.path)
            path = parts.path
            fault = srv._take_fault(path)
            if fault and fault[0] == "status":
                headers = {"Retry-After": str(fault[2])} if len(fault) > 2 else {}
                return self._send(fault[1], HTML_503, "text/html", headers=headers)
            if fault and fault[0] == "html200":
                return self._send(200, HTML_503, "text/html")
            if path == SEARCH_PATH:
                return self._search(
                    payload if payload is not None else (parse_qs(parts.query).get("json") or [""])[0]
                )
            m = re.fullmatch(r"/download/([A-Za-z0-9_]+)\.(pdb|cif)(\.gz)?", path)
            if m:
                return self._file(m[1].upper(), m[2], bool(m[3]), fault)
            m = re.fullmatch(r"/fasta/entry/([A-Za-z0-9_]+)(/download)?", path)
            if m:
                e = srv.entries.get(m[1].upper())
                if not e or e.obsolete_by or not e.fasta:
                    return self._send(404, HTML_404, "text/html")
                return self._send(200, e.fasta.read_bytes(), "text/plain")
            if path == "/rest/v1/holdings/current/entry_ids":  # unsorted, as the reference warns
                ids = [e.id for e in srv.entries.values() if not e.obsolete_by]
                return self._json(200, sorted(ids, key=lambda i: hashlib.sha1(i.encode()).hexdigest()))
            m = re.fullmatch(r"/rest/v1/holdings/status/([A-Za-z0-9_]+)", path)
            if m and m[1].upper() in srv.entries:
                e = srv.entries[m[1].upper()]
                info = {"status": "REMOVED", "status_code": "OBS", "id_code_replaced_by_latest": e.obsolete_by} \
                    if e.obsolete_by else {"status": "CURRENT", "status_code": "REL"}  # fmt: skip
                return self._json(200, {"rcsb_id": e.id, "rcsb_repository_holdings_combined": info})
            if m:
                return self._json(404, {"status": 404, "message": f"No data found for entry id: {m[1]}"})
            return self._send(404, HTML_404, "text/html")

        def _search(self, raw: bytes | str) -> None:
            try:
                code, doc = srv.search(json.loads(raw))
            except (ValueError, SearchError, TypeError, AttributeError) as exc:
                return self._json(400, {"status": 400, "message": f"JSON schema validation failed for query: {exc}",
                                        "link": "https://search.rcsb.org/redoc/index.html"})  # fmt: skip
            if code == 204:
                return self._send(204, b"", "application/json", length=False)
            return self._json(code, doc)

        def _file(self, pid: str, ext: str, gz: bool, fault: tuple | None) -> None:
            e = srv.entries.get(pid)
            if not e or e.obsolete_by or e.fmt != ext:  # e.g. .pdb of an mmCIF-only entry: 404
                return self._send(404, HTML_404, "text/html")
            data = e.structure.read_bytes()
            body = data if gz else gzip.decompress(data)
            if fault and fault[0] == "truncate":  # half the body; "short" still announces the full length
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                if fault[1] == "short":
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2])
                self.close_connection = True
                return None
            # real service: gz with a length, plain forms chunked; here close-delimited (HTTP/1.0) for plain
            return self._send(200, body, "application/octet-stream", length=gz)

    return Handler
