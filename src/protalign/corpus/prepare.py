"""`prepare` stage: parse every structure once into proteins.parquet + the packed structure store + skipped.csv.

Entries are parsed in worker processes (gemmi is single-threaded; ~55 files/s per core on the 815-entry corpus) and
streamed, in id order, into the store writer, so memory stays bounded and the output bytes depend only on the
input. Unusable entries are rows of skipped.csv with their reason; the stage fails (after writing skipped.csv) when
their share exceeds `prepare.max_skipped_fraction`. Each entry's coordinates are hashed (`coord_hash`), and an entry
whose coordinates equal an earlier id's names it in `duplicate_of`, so split and folds keep the copies together.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import multiprocessing
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from tqdm import tqdm

from protalign import compute
from protalign.compute.shards import ShardLedger, content_key
from protalign.corpus.fasta import FastaEntity, parse_fasta
from protalign.corpus.store import ProteinStructure, StructureStoreWriter
from protalign.corpus.structures import (
    HeaderEntity,
    ParsedEntry,
    StructureError,
    parse_structure,
)
from protalign.errors import InputError, MissingArtifactError, check_losses
from protalign.storage import write_parquet, write_text

MANIFEST_COLUMNS = ("id", "structure_file", "fasta_file", "format", "source")
SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("length", pa.int64()),
        ("n_chains", pa.int64()),
        ("chains", pa.string()),
        ("sequence", pa.string()),
        ("n_entities", pa.int64()),
        ("molecule_names", pa.list_(pa.string())),
        ("organisms", pa.list_(pa.string())),
        ("taxids", pa.list_(pa.string())),
        ("entity_chains", pa.list_(pa.string())),
        ("entity_lengths", pa.list_(pa.int64())),
        ("ec_numbers", pa.list_(pa.string())),
        ("method", pa.string()),
        ("resolution", pa.float64()),
        ("title", pa.string()),
        ("classification", pa.string()),
        ("structure_file", pa.string()),
        ("coord_hash", pa.string()),
        ("duplicate_of", pa.string()),
    ]
)
NUCLEIC = set("ACGTUNIX")


def fasta_entities(raw: bytes) -> list[FastaEntity]:
    """FASTA bytes -> entities (UTF-8, undecodable bytes replaced, any newline convention)."""
    text = raw.decode("utf-8", errors="replace").replace("\r\n", "\n").replace("\r", "\n")
    if not text.strip():
        return []
    return parse_fasta(text)


def read_manifest(path: Path) -> list[dict[str, str]]:
    """Manifest rows sorted by id; missing columns or duplicate ids are errors (they mean a broken fetch)."""
    if not path.exists():
        raise MissingArtifactError(f"no manifest at {path} (run `protalign fetch` first)")
    rows = list(csv.DictReader(io.StringIO(path.read_text()), delimiter="\t"))
    missing = [c for c in MANIFEST_COLUMNS if rows and c not in rows[0]]
    if missing:
        raise InputError(f"{path}: missing column(s) {missing}; need {list(MANIFEST_COLUMNS)}")
    ids = [r["id"].strip() for r in rows]
    dup = sorted({i for i in ids if ids.count(i) > 1}) if len(set(ids)) != len(ids) else []
    if dup:
        raise InputError(f"{path}: duplicate id(s) {dup[:5]}")
    return sorted(rows, key=lambda r: r["id"].strip())


def _is_protein_seq(seq: str) -> bool:
    return bool(set(seq.upper()) - NUCLEIC)


def merge_entities(
    fasta: list[FastaEntity], header: list[HeaderEntity], chains: list[str]
) -> list[tuple[str, str, str, str, int]]:
    """(name, organism, taxid, chains, sequence length) per protein entity.

    FASTA first, header COMPND/SOURCE for what the FASTA lacks. The chains field and the length are the FASTA's
    (the study's template states them); a header-only entity has length 0 (unknown).
    """
    present = set(chains)
    prot = [f for f in fasta if set(f.chains) & present]
    if not prot:  # chain ids disagree with the coordinates: fall back on the sequence alphabet
        prot = [f for f in fasta if _is_protein_seq(f.sequence)]
    hdr = [h for h in header if set(h.chains) & present] or [h for h in header if not h.chains]
    out = []
    for f in prot:
        h = next(
            (h for h in hdr if set(h.chains) & set(f.chains)), hdr[0] if len(hdr) == 1 else HeaderEntity()
        )
        out.append(
            (f.name or h.name, f.organism or h.organism, str(f.taxid or h.taxid), ", ".join(f.chains), len(f.sequence))
        )
    if not out:
        out = [(h.name, h.organism, h.taxid, ", ".join(h.chains), 0) for h in hdr]
    return out


def _row(entry_id: str, rel: str, parsed: ParsedEntry, fasta: list[FastaEntity]) -> dict[str, Any]:
    s = parsed.structure
    chains = parsed.chains
    ents = merge_entities(fasta, parsed.entities, chains)
    return {
        "id": entry_id,
        "length": len(s),
        "n_chains": len(chains),
        "chains": ",".join(chains),
        "sequence": s.sequence,
        "n_entities": len(ents),
        "molecule_names": [e[0] for e in ents],
        "organisms": [e[1] for e in ents],
        "taxids": [e[2] for e in ents],
        "entity_chains": [e[3] for e in ents],
        "entity_lengths": [e[4] for e in ents],
        "ec_numbers": parsed.ec_numbers,
        "method": parsed.method,
        "resolution": parsed.resolution if math.isfinite(parsed.resolution) else math.nan,
        "title": parsed.title,
        "classification": parsed.classification,
        "structure_file": rel,
    }


def process_entry(task: tuple[dict[str, str], str | dict[str, bytes], Any]) -> tuple[str, Any, Any]:
    """Worker: one manifest row -> ("ok", row, structure) or ("skip", (id, file, reason), None). The files come
    from the data folder (a path) or, on a worker without our filesystem, from the shipped {path: bytes}."""
    row, source, cfg = task
    entry_id = row["id"].strip()
    rel = row["structure_file"].strip()
    try:
        path, shipped = _structure_input(source, rel)
        fmt = (row.get("format") or "").strip().lower() or None
        parsed = parse_structure(path, entry_id, fmt, max_mb=float(cfg.max_file_mb), raw=shipped)
        n = len(parsed.structure)
        if n < cfg.min_residues:
            raise StructureError(f"too few residues with CA ({n} < min_residues {cfg.min_residues})")
        if n > cfg.max_residues:
            raise StructureError(f"too many residues ({n} > max_residues {cfg.max_residues})")
        fasta_rel = (row.get("fasta_file") or "").strip()
        try:
            fasta = fasta_entities(_file_bytes(source, fasta_rel) or b"") if fasta_rel else []
        except ValueError as e:  # a broken FASTA costs the names, not the structure
            fasta = []
            print(f"warning: {entry_id}: FASTA unusable ({e}); using header names")
        return "ok", _row(entry_id, rel, parsed, fasta), parsed.structure
    except StructureError as e:
        return "skip", (entry_id, rel, e.reason), None
    except Exception as e:  # noqa: BLE001 - any parser crash is a recorded skip, never a dead run
        return (
            "skip",
            (
                entry_id,
                rel,
                f"parse error: {type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''}",
            ),
            None,
        )


def coord_hash(structure: ProteinStructure) -> str:
    """sha256 of the coordinates in canonical bytes (little-endian float32 CA, int64 atom offsets, float32 atoms)."""
    h = hashlib.sha256()
    for name, array, dtype in (
        ("ca", structure.ca, "<f4"),
        ("ptr", structure.atom_ptr, "<i8"),
        ("xyz", structure.xyz, "<f4"),
    ):
        data = np.ascontiguousarray(array, dtype=dtype)
        h.update(f"{name}:{data.shape}".encode())
        h.update(data.tobytes())
    return h.hexdigest()


def mark_duplicates(rows: list[dict[str, Any]]) -> int:
    """Set `duplicate_of` = the first id (in id order) with the same coord_hash ('' for the first); count copies."""
    first: dict[str, str] = {}
    n = 0
    for row in sorted(rows, key=lambda r: r["id"]):
        row["duplicate_of"] = first.setdefault(row["coord_hash"], row["id"])
        if row["duplicate_of"] == row["id"]:
            row["duplicate_of"] = ""
        else:
            n += 1
    return n


def _results(tasks: list, workers: int):
    if workers <= 1 or len(tasks) < 2 * workers:
        yield from map(process_entry, tasks)
        return
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        yield from pool.imap(process_entry, tasks, chunksize=4)


def _structure_input(source: str | dict[str, bytes], rel: str) -> tuple[Path, bytes | None]:
    """(the path naming the structure file, its shipped bytes or None to read that path); missing: StructureError."""
    if isinstance(source, dict):
        if source.get(rel) is None:
            raise StructureError("structure file missing")
        return Path(rel), source[rel]
    path = Path(source) / rel
    if not rel or not path.is_file():
        raise StructureError("structure file missing")
    return path, None


def _file_bytes(source: str | dict[str, bytes], rel: str) -> bytes | None:
    """A manifest path's bytes from the data folder or the shipped files; None when there is no such file."""
    if isinstance(source, dict):
        return source.get(rel)
    path = Path(source) / rel
    return path.read_bytes() if rel and path.is_file() else None


def read_inputs(row: dict[str, str], data_dir: Path) -> dict[str, bytes]:
    """The entry's structure and FASTA bytes (what a worker without our filesystem needs); a missing file is left
    out, so the worker records the same skip as a local parse."""
    files = {}
    for col in ("structure_file", "fasta_file"):
        rel = (row.get(col) or "").strip()
        raw = _file_bytes(str(data_dir), rel)
        if raw is not None:
            files[rel] = raw
    return files


def parse_shard(_state: Any, payload: tuple[list[tuple[dict[str, str], dict[str, bytes]]], Any]) -> list:
    """Worker: parse the shipped bytes in memory like the local engine parses the files (no temp files: a worker
    may have no room for them, and writing them cost a third of prepare's time on Ray at 20k entries)."""
    entries, cfg = payload
    return [process_entry((row, files, cfg)) for row, files in entries]


def _engine_results(engine: compute.Engine, rows: list[dict[str, str]], data_dir: Path, cfg: Any, params: Any, cache):
    """Parse results in manifest (id) order, shard by shard on `engine`; finished shards are reused on a rerun."""
    ledger = ShardLedger(Path(cache) / "prepare" / content_key(str(data_dir), repr(cfg), params.compute.shard_size))

    def _shards():
        for shard in compute.cut([r["id"].strip() for r in rows], params.compute.shard_size):
            chunk = rows[shard.index * params.compute.shard_size :][: len(shard.ids)]
            entries = [(r, read_inputs(r, data_dir)) for r in chunk]
            digest = content_key([(r, sorted((k, hashlib.sha256(v).hexdigest()) for k, v in f.items()))
                                  for r, f in entries])  # fmt: skip
            yield f"{shard.name}-{digest}", list(shard.ids), (entries, cfg)

    for result in engine.map_shards(parse_shard, _shards(), ledger=ledger):
        yield from result
    ShardLedger.keep_record(ledger.root)  # every result is consumed: the resume state is spent
    shutil.rmtree(ledger.root, ignore_errors=True)


def write_skipped(path: Path, skipped: list[tuple[str, str, str]]) -> None:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["id", "file", "reason"])
    w.writerows(sorted(skipped))
    write_text(path, buf.getvalue())


def write_proteins(path: Path, rows: list[dict[str, Any]]) -> None:
    write_parquet(path, pa.Table.from_pylist(rows, schema=SCHEMA))


def run(params: Any, paths: Any, workers: int | None = None) -> dict[str, int]:
    """Prepare `paths.data` into `paths.proteins`, `paths.structures`, `paths.skipped`; returns counts."""
    cfg = params.prepare
    workers = workers if workers is not None else int(getattr(cfg, "workers", 2))
    rows = read_manifest(paths.manifest)
    tasks = [(r, str(paths.data), cfg) for r in rows]
    kept: list[dict[str, Any]] = []
    skipped: list[tuple[str, str, str]] = []
    writer = StructureStoreWriter(paths.structures)
    engine = compute.engine_for(params) if hasattr(params, "compute") else compute.LocalEngine()
    if engine.name == "local":
        results = _results(tasks, workers)
    else:
        results = _engine_results(engine, rows, Path(paths.data), cfg, params, paths.cache)
    try:
        for status, item, structure in tqdm(results, total=len(tasks), desc="prepare", unit="entry"):
            if status == "ok":
                assert isinstance(structure, ProteinStructure)
                writer.add(structure)
                kept.append({**item, "coord_hash": coord_hash(structure)})
            else:
                skipped.append(item)
    except BaseException:
        writer.abort()
        raise
    write_skipped(paths.skipped, skipped)  # first: the reasons must be readable when a check below fails
    if not kept:
        writer.abort()
        raise InputError(
            f"prepare: none of {len(rows)} manifest entries is usable; reasons in {paths.skipped}"
        )
    try:
        check_losses(
            "prepare", [r for _, _, r in skipped], len(rows), cfg.max_skipped_fraction, str(paths.skipped)
        )
    except InputError:
        writer.abort()
        raise
    writer.close()
    n_dup = mark_duplicates(kept)
    write_proteins(paths.proteins, kept)
    print(
        f"prepare: {len(kept)} entries kept, {len(skipped)} skipped (see {paths.skipped}); "
        f"{n_dup} share their coordinates with another id (column duplicate_of)"
    )
    return {"kept": len(kept), "skipped": len(skipped), "duplicates": n_dup}
