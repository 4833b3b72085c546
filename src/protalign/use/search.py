"""`protalign search "text"`: rank structures by cosine between a text query and them in a pair's aligned space.

The query goes through the pair's LLM exactly as the run's descriptions did (`text.embed.embed_texts`, same
pooling and truncation), then the pair's text head. Candidates are the run's corpus (cached index) or an index
written by `protalign embed`; `--split test` restricts them to the split's proteins (how the metrics were made).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from protalign.paths import Paths
from protalign.storage import read_json, write_json
from protalign.text.embed import embed_texts
from protalign.text.llms import LoadedLLM
from protalign.use.approx import ApproxSettings
from protalign.use.index import AlignedIndex, corpus_index, embed_output_index, index_pair
from protalign.use.models import Heads, load_pair_heads, load_pair_llm, text_settings
from protalign.use.pairs import Pair, UseError, resolve_pair

SPLITS = ("train", "val", "test")


class TextQueries:
    """The pair's LLM + text head, loaded once; `encode(text)` gives a unit vector in the aligned space."""

    def __init__(self, params: Any, paths: Paths, pair: Pair, heads: Heads, loaded: LoadedLLM | None = None):
        self.settings = text_settings(params, paths, pair.llm)
        t0 = time.perf_counter()
        torch.set_num_threads(params.embed_text.threads)
        if loaded is None:
            loaded = load_pair_llm(params, paths, pair.llm)
        elif loaded.spec.name != pair.llm:
            raise UseError(f"loaded LLM is {loaded.spec.name!r}, the pair needs {pair.llm!r}")
        self.load_seconds = time.perf_counter() - t0
        self.llm, self.heads = loaded, heads

    def encode(self, text: str) -> tuple[np.ndarray, dict[str, Any]]:
        if not text or not text.strip():
            raise UseError('empty query: give a description, e.g. "The protein is named lysozyme."')
        vec, stats = embed_texts(
            self.llm, ["query"], [text], self.settings["pooling"], self.settings["max_length"], batch_size=1
        )
        return self.heads.project_text(vec)[0], {"truncated": bool(stats["n_truncated"])}


def approx_settings(approx_above: int | None) -> ApproxSettings:
    """`--approx-above N`: rank approximately from N candidate rows (0: always exact; None: the default)."""
    if approx_above is None:
        return ApproxSettings()
    if approx_above < 0:
        raise UseError(f"--approx-above must be >= 0 (0: always exact), got {approx_above}")
    return ApproxSettings(min_rows=approx_above)


def candidate_ids(paths: Paths, split: str | None) -> set[str] | None:
    if split is None:
        return None
    if split not in SPLITS:
        raise UseError(f"--split must be one of {SPLITS}, got {split!r}")
    if not paths.split.exists():
        raise UseError(f"no {paths.split}: the split stage has not run")
    return set(read_json(paths.split)[split])


def results_table(
    index: AlignedIndex, hits: list[tuple[str, float]], text: bool = False
) -> list[dict[str, Any]]:
    labels = index.labels.lookup([pid for pid, _ in hits])
    out = []
    for rank, (pid, score) in enumerate(hits, start=1):
        row = {"rank": rank, "id": pid, "score": round(score, 4)}
        row["molecule_name"] = labels[pid].get("molecule_name", "")
        row["organism"] = labels[pid].get("organism", "")
        if text:
            row["description"] = labels[pid].get("text", "")
        out.append(row)
    return out


class Searcher:
    """Everything a query needs, loaded once (the CLI runs one query; tests and benchmarks run many)."""

    def __init__(
        self,
        params: Any,
        paths: Paths,
        pair: str | None = None,
        index: str | Path | None = None,
        split: str | None = None,
        loaded: LoadedLLM | None = None,
        approx: ApproxSettings | None = None,
    ):
        why = "named with --pair"
        if pair is None and index is not None:
            pair, why = index_pair(index), f"the pair {index} was embedded for"
        self.pair = resolve_pair(paths, pair, why)
        self.heads = load_pair_heads(self.pair)
        t0 = time.perf_counter()
        self.index = (
            embed_output_index(index, self.pair, approx)
            if index is not None
            else corpus_index(paths, self.pair, "structure", self.heads, approx)
        )
        self.index_seconds = time.perf_counter() - t0
        self.candidates = candidate_ids(paths, split)
        self.split = split
        self.queries = TextQueries(params, paths, self.pair, self.heads, loaded)

    def search(self, query: str, top: int = 10) -> dict[str, Any]:
        t0 = time.perf_counter()
        vec, info = self.queries.encode(query)
        t1 = time.perf_counter()
        hits = self.index.top(vec, top, self.candidates)
        t2 = time.perf_counter()
        n = len(self.index.ids) if self.candidates is None else len(self.candidates & set(self.index.ids))
        return {
            "command": "search",
            "query": query,
            "query_truncated": info["truncated"],
            **self.pair.as_json(),
            "candidates": self.index.source
            + (f", restricted to split '{self.split}' ({n})" if self.split else ""),
            "n_candidates": n,
            "ranking": self.index.method(self.candidates),
            "results": results_table(self.index, hits),
            "seconds": {
                "load_llm": round(self.queries.load_seconds, 4),
                "load_index": round(self.index_seconds, 4),
                "encode_query": round(t1 - t0, 4),
                "rank": round(t2 - t1, 4),
            },
        }


def run(
    params: Any,
    paths: Paths,
    query: str,
    pair: str | None = None,
    top: int = 10,
    index: str | Path | None = None,
    split: str | None = None,
    json_out: str | Path | None = None,
    loaded: LoadedLLM | None = None,
    approx_above: int | None = None,
) -> tuple[Pair, dict[str, Any]]:
    """Check the input first (cheap), then load and rank; the JSON file is written only on success."""
    if not query or not query.strip():
        raise UseError('empty query: give a description, e.g. "The protein is named lysozyme."')
    if top < 1:
        raise UseError(f"--top must be >= 1, got {top}")
    searcher = Searcher(params, paths, pair, index, split, loaded, approx_settings(approx_above))
    result = searcher.search(query, top)
    if json_out is not None:
        write_json(json_out, result)
    return searcher.pair, result
