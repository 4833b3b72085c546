"""`protalign embed PATH...`: your own structure files -> GDM embeddings + their projections into the aligned space.

Files go through `prepare`'s own entry worker (same parser, same residue limits, same header names), then the
run's trained GDM (`embed_structure`'s batching) and the pair's structure head. The output folder holds two
EmbeddingSets with the same ids (`structure/`: raw GDM vectors, `aligned/`: unit vectors in the pair's aligned
space) and `proteins.parquet` (names, organisms; `prepare`'s schema); `search --index OUT` ranks it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from protalign import compute
from protalign.corpus.local import EXTENSIONS, entry_id, fasta_for, split_extension
from protalign.corpus.prepare import parse_shard, process_entry, read_inputs, write_proteins
from protalign.devices import resolve_device
from protalign.paths import Paths
from protalign.storage import EmbeddingSet, atomic_path, save_embeddings
from protalign.structure.embed import embed_samples, embed_sharded
from protalign.structure.registry import StructureEncoder
from protalign.structure.train import set_threads
from protalign.use.models import Heads, load_pair_heads, structure_encoder
from protalign.use.pairs import Pair, UseError, resolve_pair

log = logging.getLogger(__name__)
ALIGNED, STRUCTURE, PROTEINS = "aligned", "structure", "proteins.parquet"


def collect_files(inputs: Sequence[str | Path]) -> list[Path]:
    """Structure files named directly, or found (recursively) in folders by their extension; sorted, unique."""
    if not inputs:
        raise UseError("no structure files or folders given")
    files: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and split_extension(p.name))
            others = sum(1 for p in path.rglob("*") if p.is_file() and not split_extension(p.name))
            if others:
                log.info("%s: ignored %d file(s) without a structure extension", path, others)
            if not found:
                raise UseError(f"no structure files ({', '.join(sorted(EXTENSIONS))}) in folder {path}")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise UseError(f"no such file or folder: {path}")
    return list(dict.fromkeys(p.resolve() for p in files))


def _task(path: Path, prepare_params: Any) -> tuple[dict[str, str], str, Any]:
    """prepare's worker input; the FASTA (names, organisms) is looked up as `fetch --source PATH` does: beside
    the file or in a sibling `fasta/` folder (so embedding `data/structures/` gives the run's own names)."""
    split = split_extension(path.name)
    stem, fmt = (split[0], EXTENSIONS[split[1]][0]) if split else (path.name.split(".")[0], "")
    try:
        ident = entry_id(stem)
    except ValueError as exc:
        raise UseError(f"{path}: {exc}") from exc
    fasta = fasta_for(path.parent, stem, ident) or fasta_for(path.parent.parent / "fasta", stem, ident)
    row = {"id": ident, "structure_file": path.name, "format": fmt, "fasta_file": str(fasta or "")}
    return row, str(path.parent), prepare_params


def parse_files(files: Sequence[Path], params: Any) -> tuple[list[dict], list, list[dict]]:
    """(protein rows, structures, failures) via `prepare`'s worker; failures carry the file and the reason."""
    rows, structures, failures = [], [], []
    seen: dict[str, Path] = {}
    tasks = []
    for path in files:
        task = _task(path, params.prepare)
        ident = task[0]["id"]
        if ident in seen:
            raise UseError(f"two inputs give the id {ident!r}: {seen[ident]} and {path}; rename one")
        seen[ident] = path
        tasks.append(task)
    engine = compute.engine_for(params)
    if engine.name == "local":
        results = map(process_entry, tasks)
    else:  # the files' bytes travel to the workers; shards cut from the sorted ids, results in input order
        order = sorted(range(len(tasks)), key=lambda i: tasks[i][0]["id"])
        size = params.compute.shard_size
        shards = (
            (f"shard-{k:06d}", [tasks[i][0]["id"] for i in idx],
             ([(tasks[i][0], read_inputs(tasks[i][0], Path(tasks[i][1]))) for i in idx], params.prepare))
            for k, idx in enumerate(order[j : j + size] for j in range(0, len(order), size))
        )  # fmt: skip
        parsed = [r for shard in engine.map_shards(parse_shard, shards) for r in shard]
        by_pos = dict(zip(order, parsed, strict=True))
        results = (by_pos[i] for i in range(len(tasks)))
    for path, (status, row, structure) in zip(files, results, strict=True):
        if status == "ok":
            row["structure_file"] = str(path)
            rows.append(row)
            structures.append(structure)
        else:
            failures.append({"id": ident, "file": str(path), "reason": row[2]})
    return rows, structures, failures


def encode_structures(
    encoder: StructureEncoder, structures: Sequence, params: Any
) -> tuple[list[str], np.ndarray, list[dict]]:
    """GDM vectors for parsed structures (featurize + `embed_samples`); failures returned with their reason."""
    samples, failed = [], []
    for s in structures:
        try:
            samples.append(encoder.featurize(encoder.input_structure(s)))  # as the model was trained
        except (ValueError, RuntimeError, IndexError, KeyError) as exc:
            failed.append({"id": s.id, "reason": f"featurize failed: {type(exc).__name__}: {exc}"})
    set_threads(params)
    p = params.structure
    engine = compute.engine_for(params)
    if engine.name == "local":
        vectors, skipped = embed_samples(
            encoder, samples, p.train.batch_size, resolve_device(p.device, "structure.device"), p.max_embed_gb
        )
    else:  # the encoder travels once per actor; the same batches as one process
        vectors, skipped = embed_sharded(
            engine, encoder, samples, p.train.batch_size, p.device, p.max_embed_gb, params.compute.shard_size, None
        )
    ids = [s.id for s in structures if s.id in vectors]
    array = np.stack([vectors[i] for i in ids]) if ids else np.zeros((0, encoder.dim), np.float32)
    return ids, array, failed + skipped


def _fail_message(failures: list[dict]) -> str:
    lines = [f"  {f.get('file', f['id'])}: {f['reason']}" for f in failures[:20]]
    more = f"\n  ... and {len(failures) - 20} more" if len(failures) > 20 else ""
    return "\n".join(lines) + more


def embed_files(
    params: Any,
    paths: Paths,
    pair: Pair,
    files: Sequence[Path],
    skip_bad: bool = False,
    heads: Heads | None = None,
) -> tuple[list[dict], EmbeddingSet, EmbeddingSet, list[dict], dict[str, Any]]:
    """(rows, raw set, aligned set, skipped, encoder info); without `skip_bad` any unusable file is an error."""
    rows, structures, failures = parse_files(files, params)
    if failures and not skip_bad:
        raise UseError(f"{len(failures)} structure(s) could not be used:\n{_fail_message(failures)}")
    encoder, enc_info = structure_encoder(params, paths, pair.gdm)
    ids, raw, failed = encode_structures(encoder, structures, params)
    if failed and not skip_bad:
        raise UseError(f"{len(failed)} structure(s) could not be embedded:\n{_fail_message(failed)}")
    skipped = sorted(failures + failed, key=lambda f: f["id"])
    if not ids:
        raise UseError(f"no structure could be embedded:\n{_fail_message(skipped)}")
    heads = heads or load_pair_heads(pair)
    aligned = heads.project_structure(raw)
    by_id = {r["id"]: r for r in rows}
    rows = [by_id[i] for i in ids]
    meta = {
        "pair": pair.id,
        "heads": pair.heads_label,
        "heads_sha256": pair.heads_sha256,
        **enc_info,
        "skipped": skipped,
        "n_skipped": len(skipped),
    }
    raw_set = EmbeddingSet(ids=ids, vectors=raw, meta={"side": "structure", "gdm": pair.gdm, **meta})
    aligned_set = EmbeddingSet(ids=ids, vectors=aligned, meta={"side": "aligned", "space": pair.id, **meta})
    return rows, raw_set, aligned_set, skipped, enc_info


def run(
    params: Any,
    paths: Paths,
    inputs: Sequence[str | Path],
    out: str | Path,
    pair: str | None = None,
    skip_bad: bool = False,
) -> dict[str, Any]:
    """Embed `inputs` into `out/` (written atomically: a failure leaves no folder behind)."""
    t0 = time.perf_counter()
    chosen = resolve_pair(paths, pair)
    files = collect_files(inputs)
    out = Path(out)
    if out.exists() and not (out / ALIGNED).is_dir():
        raise UseError(f"{out} exists and is not an embed output folder; choose another --out")
    try:
        rows, raw_set, aligned_set, skipped, _ = embed_files(params, paths, chosen, files, skip_bad)
    except UseError as exc:
        if skip_bad or "could not be" not in str(exc):
            raise
        raise UseError(f"{exc}\n(fix or remove them, or pass --skip-bad to embed the rest)") from exc
    with atomic_path(out) as tmp:
        tmp.mkdir()
        save_embeddings(tmp / STRUCTURE, raw_set)
        save_embeddings(tmp / ALIGNED, aligned_set)
        write_proteins(tmp / PROTEINS, rows)
    return {
        "pair": chosen,
        "out": str(out),
        "n_files": len(files),
        "n_embedded": len(aligned_set.ids),
        "skipped": skipped,
        "structure_dim": int(raw_set.vectors.shape[1]),
        "aligned_dim": int(aligned_set.vectors.shape[1]),
        "seconds": round(time.perf_counter() - t0, 3),
    }
