"""Aligned-space indexes: unit vectors of a candidate set + a label per id, ranked by cosine (a dot product).

The run's corpus index is the pair's head applied to the run's embeddings; it is built once and cached in
`paths.cache/use/<pair>-<side>-<key>/` (float32 shards + id table, `use.vectors`), keyed by the hashes of the
heads file and of the embedding files, so a rerun of the pipeline gives a new key and a stale index is never read.
Ranking is exact by blocks up to `ApproxSettings.min_rows` rows and FAISS IVF + exact re-rank above (`use.approx`).
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
from protalign.storage import EMBEDDING_FILE, IDS_FILE, META_FILE, file_sha256, load_embeddings
from protalign.use.approx import ApproxSettings, approx_top, load_or_build
from protalign.use.embed import ALIGNED, PROTEINS
from protalign.use.models import Heads
from protalign.use.pairs import Pair, UseError
from protalign.use.vectors import ShardedVectors, exact_top, open_index, write_index

log = logging.getLogger(__name__)
INDEX_FORMAT = 2  # 1: one EmbeddingSet (still readable), 2: shards + id table
BUILD_ROWS = 65_536  # rows projected through the head at a time when building
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
    """Rows of `vectors` (unit, float32; shards or one array) belong to `ids`; `source` is shown in the output.

    `directory` is where the vectors live (the approximate index is saved beside them); None: in memory only.
    """

    ids: list[str]
    vectors: ShardedVectors | np.ndarray
    source: str
    labels: Labels = field(default_factory=lambda: Labels(None))
    directory: Path | None = None
    approx: ApproxSettings = field(default_factory=ApproxSettings)

    def __post_init__(self) -> None:
        if isinstance(self.vectors, np.ndarray):
            self.vectors = ShardedVectors([np.asarray(self.vectors, dtype=np.float32)])
        if len(self.vectors) != len(self.ids):
            raise ValueError(f"{len(self.vectors)} index rows for {len(self.ids)} ids")
        self._faiss = None

    def method(self, candidates: set[str] | None = None) -> str:
        """How `top` ranks: exact below the size threshold or with a candidate list, else approximate."""
        if candidates is None and self.approx.applies(len(self.ids)):
            a = self.approx
            return f"approximate (FAISS IVF-SQ8, nprobe {a.nprobe}, {a.candidates} re-ranked exactly)"
        return "exact"

    def top(self, query: np.ndarray, k: int, candidates: set[str] | None = None) -> list[tuple[str, float]]:
        """The k best (id, cosine) for one unit query vector; ties broken by id so output is deterministic."""
        if k < 1:
            raise UseError(f"--top must be >= 1, got {k}")
        mask = None
        if candidates is not None:
            mask = np.fromiter((i in candidates for i in self.ids), dtype=bool, count=len(self.ids))
            if not mask.any():
                raise UseError("none of the requested candidate proteins is in the index")
        if self.method(candidates) != "exact":
            if self._faiss is None:
                self._faiss = load_or_build(self.directory, self.vectors, self.approx)
            hits = approx_top(self._faiss, self.vectors, self.ids, query, k, self.approx)[0]
        else:
            hits = exact_top(self.vectors, self.ids, query, k, mask)[0]
        return [(self.ids[row], score) for row, score in hits]


def _join(value: Any) -> str:
    """One readable cell from a list column (distinct values, order kept)."""
    if value is None or isinstance(value, float):
        return ""
    items = [value] if isinstance(value, str) else list(value)
    return "; ".join(dict.fromkeys(str(v).strip() for v in items if str(v).strip()))


def _load_mapped(directory: Path) -> tuple[list[str], ShardedVectors]:
    """An index (shards or an EmbeddingSet folder), memory-mapped: nothing is read before a query scans it."""
    ids, vectors, _ = open_index(directory)
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


def corpus_index(
    paths: Paths, pair: Pair, side: str, heads: Heads | None = None, approx: ApproxSettings | None = None
) -> AlignedIndex:
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
        blocks = (project(src.vectors[s : s + BUILD_ROWS]) for s in range(0, len(src.ids), BUILD_ROWS))
        write_index(target, src.ids, blocks, heads.config.dim, meta)
        log.info("built the %s index of %s (%d proteins) in %s", side, pair.id, len(src.ids), target)
        ids, vectors = _load_mapped(target)
    rel = _source(paths, pair, side).relative_to(paths.root)
    labels = Labels(paths.proteins, paths.summaries if side == "text" else None)
    source = f"run corpus: {rel} ({len(ids)} proteins)"
    return AlignedIndex(ids, vectors, source, labels, target, approx or ApproxSettings())


def embed_output_index(
    directory: str | Path, pair: Pair, approx: ApproxSettings | None = None
) -> AlignedIndex:
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
    source = f"embed output: {directory} ({len(ids)} proteins)"
    return AlignedIndex(
        ids, vectors, source, Labels(directory / PROTEINS), directory / ALIGNED, approx or ApproxSettings()
    )


def index_pair(directory: str | Path) -> str | None:
    """The pair an embed output was built for (so `search --index DIR` needs no --pair)."""
    meta = Path(directory) / ALIGNED / META_FILE
    return json.loads(meta.read_text()).get("pair") if meta.exists() else None
