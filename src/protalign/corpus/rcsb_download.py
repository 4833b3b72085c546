"""RCSB HTTP layer and per-entry downloads: polite retries, atomic writes, and checks that a file is complete.

Why so careful: RCSB answers 429/503 under load (sometimes with an HTML page and status 200 from proxies), plain
files come without Content-Length, and a truncated gzip or an error page saved as `<ID>.pdb` would poison every
later stage. So every body is streamed to a temp name, checked (length, gzip CRC, first record), and only then
renamed; files already present are re-checked and kept.
"""

from __future__ import annotations

import email.utils
import gzip
import http.client
import json
import os
import random
import re
import shutil
import tempfile
import threading
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from protalign import __version__

USER_AGENT = f"protalign/{__version__} (protein text/structure alignment corpus fetch; python-urllib)"
# 4-character PDB ids, and the extended `pdb_0000xxxx` ids wwPDB starts issuing when those run out.
_ID_RE = re.compile(r"[1-9][A-Z0-9]{3}|PDB_[0-9A-Z]{8}")
RETRY_STATUS = frozenset(
    {403, 408, 425, 429, 500, 502, 503, 504}
)  # 403 is transient on RCSB (py-rcsb-api#80)
PDB_RECORDS = frozenset(
    "HEADER OBSLTE TITLE SPLIT CAVEAT COMPND SOURCE KEYWDS EXPDTA NUMMDL MDLTYP AUTHOR REVDAT SPRSDE JRNL "
    "REMARK DBREF DBREF1 DBREF2 SEQADV SEQRES MODRES HET HETNAM HETSYN FORMUL HELIX SHEET SSBOND LINK CISPEP "
    "SITE CRYST1 ORIGX1 SCALE1 MTRIX1 MODEL ATOM HETATM TER ENDMDL CONECT MASTER END".split()
)
_ERROR_MARKERS = (b"<html", b"<!doctype", b"no fasta files were found", b"no valid pdb ids")

sleep: Callable[[float], None] = time.sleep  # module-level so tests can record waits instead of sleeping


def normalize_id(raw: object) -> str:
    """Upper-case PDB id, or ValueError: ids from a server become file names, so nothing else gets through."""
    if not isinstance(raw, str) or not _ID_RE.fullmatch(raw.upper()):
        raise ValueError(f"invalid PDB id {str(raw)[:80]!r}")
    return raw.upper()


def url_id(pid: str) -> str:
    """The id as used in RCSB URLs (extended ids are documented lower-case: pdb_00001aki)."""
    return pid.lower() if pid.startswith("PDB_") else pid


class FetchError(Exception):
    """A request that failed for good (after retries, or with a non-retryable status such as 404)."""

    def __init__(self, reason: str, status: int | None = None):
        super().__init__(reason)
        self.status = status


class BadContent(Exception):
    """The body arrived but is not what was asked for (truncated, corrupt, an error page)."""


class _Retry(Exception):
    def __init__(self, reason: str, retry_after: float | None = None):
        super().__init__(reason)
        self.retry_after = retry_after


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


@dataclass
class HttpClient:
    """urllib with retries: exponential backoff + jitter on 429/5xx/timeouts/short reads, Retry-After honoured."""

    timeout: float = 30.0
    retries: int = 5
    backoff_base: float = 1.0
    max_wait: float = 120.0
    seed: int = 0
    _rng: random.Random = field(init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)  # jitter only changes timing, but stays seeded

    def _wait(self, attempt: int, retry_after: float | None) -> float:
        with self._lock:
            jitter = 0.5 + self._rng.random() / 2
        wait = min(self.max_wait, self.backoff_base * 2**attempt) * jitter
        if retry_after is not None:
            wait = max(wait, min(retry_after, self.max_wait))
        return wait

    def _with_retries(self, attempt_fn: Callable[[], object]) -> object:
        last = ""
        for attempt in range(self.retries + 1):
            try:
                return attempt_fn()
            except _Retry as exc:
                last = str(exc)
                if attempt < self.retries:
                    sleep(self._wait(attempt, exc.retry_after))
        raise FetchError(f"gave up after {self.retries + 1} attempts: {last}")

    def _open(self, url: str, data: bytes | None, headers: dict[str, str]):
        req = urllib.request.Request(url, data=data, headers={"User-Agent": USER_AGENT, **headers})
        try:
            return urllib.request.urlopen(req, timeout=self.timeout)
        except urllib.error.HTTPError as exc:
            exc.close()
            if exc.code in RETRY_STATUS:
                raise _Retry(f"HTTP {exc.code}", _retry_after(exc.headers.get("Retry-After"))) from None
            raise FetchError(f"HTTP {exc.code}", exc.code) from None
        except (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError) as exc:
            raise _Retry(f"network error: {exc}") from None

    def request(self, url: str, data: bytes | None = None, headers: dict | None = None) -> tuple[int, bytes]:
        """(status, body) of a small request (search pages, holdings status); the body is read fully."""

        def attempt() -> tuple[int, bytes]:
            with self._open(url, data, headers or {}) as resp:
                try:
                    body = resp.read()
                except (http.client.HTTPException, ConnectionError, TimeoutError, OSError) as exc:
                    raise _Retry(f"read failed: {exc}") from None
                _check_length(resp, len(body))
                return resp.status, body

        return self._with_retries(attempt)  # type: ignore[return-value]

    def download(self, url: str, final: Path, partial_dir: Path, check: Callable[[Path, str], None]) -> None:
        """Stream `url` to a temp file in `partial_dir`, `check` it, and rename it to `final` only if it passes."""

        def attempt() -> None:
            fd, tmp_name = tempfile.mkstemp(dir=partial_dir, prefix=final.name + ".", suffix=".part")
            tmp = Path(tmp_name)
            try:
                with os.fdopen(fd, "wb") as out, self._open(url, None, {"Accept": "*/*"}) as resp:
                    try:
                        shutil.copyfileobj(resp, out, 1 << 20)
                    except (http.client.HTTPException, ConnectionError, TimeoutError, OSError) as exc:
                        raise _Retry(f"read failed: {exc}") from None
                    out.flush()
                    _check_length(resp, out.tell())
                try:
                    check(tmp, final.name)
                except BadContent as exc:
                    raise _Retry(f"bad content: {exc}") from None
                os.replace(tmp, final)
            finally:
                tmp.unlink(missing_ok=True)

        self._with_retries(attempt)


def _check_length(resp, got: int) -> None:
    # http.client's read(amt) stops quietly at a short body, so compare with Content-Length ourselves
    expected = resp.headers.get("Content-Length")
    if expected is not None and expected.isdigit() and int(expected) != got:
        raise _Retry(f"truncated body: {got} of {expected} bytes")


def check_structure(path: Path, name: str | None = None) -> None:
    """Raise BadContent unless `path` is a whole, readable PDB/mmCIF file (gzip CRC checked to the end).

    `name` (default: the file's own) says the format: <ID>.<pdb|cif>[.gz]; temp files carry another name."""
    kind = Path(name or path.name)
    is_cif = ".cif" in kind.suffixes
    opener = gzip.open if kind.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            head = fh.read(1 << 16)
            while fh.read(1 << 20):
                pass
    except (OSError, EOFError, zlib.error) as exc:
        raise BadContent(f"corrupt or truncated file: {exc}") from None
    if not head.strip():
        raise BadContent("empty file")
    if any(m in head[:512].lower() for m in _ERROR_MARKERS):
        raise BadContent("an HTML/error page, not a structure")
    lines = [ln.strip() for ln in head.decode("latin-1").splitlines() if ln.strip()]
    if is_cif:
        first = next((ln for ln in lines if not ln.startswith("#")), "")
        if not first.startswith("data_"):
            raise BadContent(f"mmCIF file does not start with data_: {first[:40]!r}")
    elif lines[0][:6].strip().upper() not in PDB_RECORDS:
        raise BadContent(f"not a PDB-format record: {lines[0][:40]!r}")


_SEQ_RE = re.compile(r"[A-Za-z*\-]+")


def check_fasta(path: Path, name: str | None = None) -> None:
    """Raise BadContent unless `path` is RCSB FASTA: '>' headers, each followed by sequence lines."""
    raw = path.read_bytes()
    if any(m in raw[:512].lower() for m in _ERROR_MARKERS):
        raise BadContent("an HTML/error page, not FASTA")
    lines = [ln.strip() for ln in raw.decode("utf-8", "replace").splitlines() if ln.strip()]
    if not lines or not lines[0].startswith(">"):
        raise BadContent("no FASTA header")
    seq_lines = -1  # -1 before the first header
    for ln in lines + [">"]:  # the sentinel closes the last record
        if ln.startswith(">"):
            if seq_lines == 0:
                raise BadContent("a FASTA record without a sequence")
            seq_lines = 0
        elif _SEQ_RE.fullmatch(ln):
            seq_lines += 1
        else:
            raise BadContent(f"not a sequence line: {ln[:40]!r}")


@dataclass(frozen=True)
class Row:
    """One line of download_report.tsv."""

    id: str
    kind: str  # structure | fasta | search
    status: str  # downloaded | kept | failed | rejected
    file: str = ""
    reason: str = ""


def _existing(folder: Path, names: list[str], check: Callable[[Path], None]) -> tuple[Path | None, str]:
    """A valid file already there (resume), else None; invalid leftovers are removed and said so."""
    note = ""
    for name in names:
        path = folder / name
        if path.exists():
            try:
                check(path)
                return path, ""
            except BadContent as exc:
                path.unlink()
                note = f"replaced invalid existing {name} ({exc}); "
    return None, note


def _holdings_note(client: HttpClient, data_url: str, pid: str) -> str:
    """Why an id 404s: obsolete entries are listed by the holdings service with their replacement."""
    try:
        status, body = client.request(f"{data_url}/holdings/status/{url_id(pid)}")
        info = json.loads(body).get("rcsb_repository_holdings_combined", {}) if status == 200 else {}
    except (FetchError, ValueError, AttributeError):
        return ""
    if not isinstance(info, dict) or not info.get("status"):
        return ""
    note = f"; holdings status {info.get('status')} ({info.get('status_code', '?')})"
    replaced = info.get("id_code_replaced_by_latest")
    return note + (f", replaced by {replaced}" if replaced else "")


def fetch_entry(client: HttpClient, pid: str, dest: Path, urls: dict[str, str]) -> list[Row]:
    """Structure (PDB format, else mmCIF) and FASTA of one entry; every outcome becomes a Row."""
    sdir, fdir, partial = dest / "structures", dest / "fasta", dest / ".partial"
    rows: list[Row] = []
    uid = url_id(pid)
    found, note = _existing(
        sdir, [f"{pid}.pdb.gz", f"{pid}.cif.gz", f"{pid}.pdb", f"{pid}.cif"], check_structure
    )
    if found:
        rows.append(Row(pid, "structure", "kept", f"structures/{found.name}"))
    else:
        reason = ""
        for ext in ("pdb", "cif"):  # no PDB-format file (large, multi-char chains, ...) -> 404 -> mmCIF
            name = f"{pid}.{ext}.gz"
            try:
                client.download(f"{urls['files']}/{uid}.{ext}.gz", sdir / name, partial, check_structure)
                rows.append(Row(pid, "structure", "downloaded", f"structures/{name}", note.rstrip("; ")))
                break
            except FetchError as exc:
                reason += f"{ext}: {exc}; "
                if exc.status != 404:
                    break
        else:
            reason = reason.rstrip("; ") + _holdings_note(client, urls["data"], pid)
        if not rows:
            rows.append(Row(pid, "structure", "failed", "", note + reason.rstrip("; ")))
    found, note = _existing(fdir, [f"{pid}.fasta"], check_fasta)
    if found:
        rows.append(Row(pid, "fasta", "kept", f"fasta/{found.name}"))
        return rows
    try:
        client.download(f"{urls['fasta']}/{uid}/download", fdir / f"{pid}.fasta", partial, check_fasta)
        rows.append(Row(pid, "fasta", "downloaded", f"fasta/{pid}.fasta", note.rstrip("; ")))
    except FetchError as exc:
        rows.append(Row(pid, "fasta", "failed", "", note + str(exc)))
    return rows
