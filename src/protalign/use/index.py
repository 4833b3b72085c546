"""Aligned-space indexes: unit vectors of a candidate set + a label per id, ranked by cosine (a dot product).

The run's corpus index is the pair's head applied to the run's embeddings; it is built once and cached in
`paths.cache/use/<pair>-<side>-<key>/` (an EmbeddingSet), keyed by the hashes of the heads file and of the
embedding files, so a rerun of the pipeline gives a new key and a stale index is never read.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from protalign.paths import Paths
from protalign.storage import (
    EMBEDDING_FILE,
    IDS_FILE,
    META_FILE,
    EmbeddingSet,
    file_sha256,
    load_embeddings,
    save_embeddings,
)
from protalign.use.embed import ALIGNED, PROTEINS
from protalign.use.models import Heads
from protalign.use.pairs import Pair, UseError

log = logging.getLogger(__name__)
INDEX_FORMAT = 1
# what an index's vectors came from: structures (ranked by `search`) or descriptions (ranked by `describe`)
SIDES = ("structure", "text")


@dataclass
class Labels:
    """Names for result rows, read for the hit ids only (a 20k-row list-column scan costs more than the ranking)."""

    proteins: Path | None
    summaries: Path | None = None

    def lookup(self, ids: list[str]) -> dict[str, dict[str, str]]:
        out: dict[str, dict[str, str]] = {i: {} for i in ids}
        if self.proteins is None or not self.proteins.exists():
            return out
        wanted = pa.array(ids, type=pa.string())
        table = pq.read_table(self.proteins, columns=["id", "molecule_names", "organisms"])
        for row in table.filter(pc.is_in(table["id"], value_set=wanted)).to_pylist():
            out[row["id"]].update(
                molecule_name=_join(row["molecule_names"]), organism=_join(row["organisms"])
            )
        if self.summaries is not None and self.summaries.exists():
            table = pq.read_table(self.summaries, columns=["id", "text"])
            for row in table.filter(pc.is_in(table["id"], value_set=wanted)).to_pylist():
                out[row["id"]]["text"] = row["text"] or ""
        return out


@dataclass
class AlignedIndex:
    """Rows of `vectors` (unit, float32) belong to `ids`; `source` says where they came from (for the output)."""

    ids: list[str]
    vectors: np.ndarray
    source: str
    labels: Labels = field(default_factory=lambda: Labels(None))

    def top(self, query: np.ndarray, k: int, candidates: set[str] | None = None) -> list[tuple[str, float]]:
        """The k best (id, cosine) for one unit query vector; ties broken by id so output is deterministic."""
        if k < 1:
            raise UseError(f"--top must be >= 1, got {k}")
        q = np.asarray(query, dtype=np.float32)
        if candidates is None:
            rows, scores = np.arange(len(self.ids)), self.vectors @ q  # no row copy of a large index
        else:
            rows = np.array([n for n, i in enumerate(self.ids) if i in candidates], dtype=np.int64)
            if rows.size == 0:
                raise UseError("none of the requested candidate proteins is in the index")
            scores = self.vectors[rows] @ q
        k = min(k, rows.size)
        best = np.argpartition(-scores, k - 1)[:k] if k < rows.size else np.arange(rows.size)
        order = sorted(best.tolist(), key=lambda j: (-scores[j], self.ids[rows[j]]))
        return [(self.ids[rows[j]], float(scores[j])) for j in order]


def _join(value: Any) -> str:
    """One readable cell from a list column (distinct values, order kept)."""
    if value is None or isinstance(value, float):
        return ""
    items = [value] if isinstance(value, str) else list(value)
    return "; ".join(dict.fromkeys(str(v).strip() for v in items if str(v).strip()))


def _load_mapped(directory: Path) -> tuple[list[str], np.ndarray]:
    """A cached index, memory-mapped (no copy of the array: the dot product reads it once)."""
    vectors = np.load(directory / EMBEDDING_FILE, mmap_mode="r", allow_pickle=False)
    ids = (directory / IDS_FILE).read_text().split()
    if vectors.ndim != 2 or vectors.shape[0] != len(ids) or vectors.dtype != np.float32:
        raise ValueError(f"cached index {directory} is inconsistent")
    return ids, vectors


def _source(paths: Paths, pair: Pair, side: str) -> Path:
    return paths.structure_embeddings(pair.gdm) if side == "structure" else paths.text_embeddings(pair.llm)


def cache_dir(paths: Paths, pair: Pair, side: str) -> Path:
    """Cache folder for this pair/side, keyed by the heads' and the source embeddings' content hashes."""
    src = _source(paths, pair, side)
    if not (src / EMBEDDING_FILE).exists():
        raise UseError(f"no embeddings in {src}: the pipeline has not run here (run `dvc repro`)")
    parts = [
        INDEX_FORMAT,
        side,
        pair.heads_sha256,
        file_sha256(src / EMBEDDING_FILE),
        file_sha256(src / IDS_FILE),
    ]
    key = hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]
    return paths.cache / "use" / f"{pair.id}-{side}-{key}"


def corpus_index(paths: Paths, pair: Pair, side: str, heads: Heads | None = None) -> AlignedIndex:
    """The run's corpus in the aligned space (structures for search, descriptions for describe), cached."""
    if side not in SIDES:
        raise ValueError(f"side must be one of {SIDES}, got {side!r}")
    target = cache_dir(paths, pair, side)
    try:
        ids, vectors = _load_mapped(target)
    except (FileNotFoundError, ValueError):
        if heads is None:
            from protalign.use.models import load_pair_heads

            heads = load_pair_heads(pair)
        src = load_embeddings(_source(paths, pair, side))
        project = heads.project_structure if side == "structure" else heads.project_text
        meta = {
            "pair": pair.id,
            "side": side,
            "heads_sha256": pair.heads_sha256,
            "source": str(_source(paths, pair, side)),
        }
        save_embeddings(target, EmbeddingSet(ids=src.ids, vectors=project(src.vectors), meta=meta))
        log.info("built the %s index of %s (%d proteins) in %s", side, pair.id, len(src.ids), target)
        ids, vectors = _load_mapped(target)
    rel = _source(paths, pair, side).relative_to(paths.root)
    labels = Labels(paths.proteins, paths.summaries if side == "text" else None)
    return AlignedIndex(ids, vectors, f"run corpus: {rel} ({len(ids)} proteins)", labels)


def embed_output_index(directory: str | Path, pair: Pair) -> AlignedIndex:
    """An index written by `protalign embed --out DIR`; its heads must be the pair's current heads."""
    directory = Path(directory)
    if not (directory / ALIGNED / EMBEDDING_FILE).exists():
        raise UseError(f"{directory} is not an output of `protalign embed` (no {ALIGNED}/{EMBEDDING_FILE})")
    meta = json.loads((directory / ALIGNED / META_FILE).read_text())
    if meta.get("pair") != pair.id:
        raise UseError(
            f"{directory} was embedded for pair {meta.get('pair')!r}, not {pair.id!r}; "
            f"pass --pair {meta.get('pair')} or embed again"
        )
    if meta.get("heads_sha256") != pair.heads_sha256:
        raise UseError(
            f"{directory} was embedded with other heads than {pair.heads_label} (retrained since?); "
            "run `protalign embed` again"
        )
    ids, vectors = _load_mapped(directory / ALIGNED)
    return AlignedIndex(
        ids, vectors, f"embed output: {directory} ({len(ids)} proteins)", Labels(directory / PROTEINS)
    )


def index_pair(directory: str | Path) -> str | None:
    """The pair an embed output was built for (so `search --index DIR` needs no --pair)."""
    meta = Path(directory) / ALIGNED / META_FILE
    return json.loads(meta.read_text()).get("pair") if meta.exists() else None
