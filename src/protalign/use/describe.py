"""`protalign describe STRUCTURE`: the corpus descriptions nearest to a new structure in a pair's aligned space.

The structure is parsed and embedded exactly as `protalign embed` does (prepare's worker, the run's GDM, the
pair's structure head); candidates are the run's descriptions through the pair's text head (cached index).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from protalign.paths import Paths
from protalign.storage import write_json
from protalign.use.embed import collect_files, embed_files
from protalign.use.index import corpus_index
from protalign.use.models import load_pair_heads
from protalign.use.pairs import Pair, UseError, resolve_pair
from protalign.use.search import approx_settings, candidate_ids, results_table


def run(
    params: Any,
    paths: Paths,
    structure: str | Path,
    pair: str | None = None,
    top: int = 10,
    split: str | None = None,
    json_out: str | Path | None = None,
    approx_above: int | None = None,
) -> tuple[Pair, dict[str, Any]]:
    if top < 1:
        raise UseError(f"--top must be >= 1, got {top}")
    approx = approx_settings(approx_above)
    path = Path(structure)
    if not path.is_file():
        raise UseError(f"no such structure file: {path}")
    t0 = time.perf_counter()
    chosen = resolve_pair(paths, pair)
    heads = load_pair_heads(chosen)
    candidates = candidate_ids(paths, split)
    rows, _, aligned, _, _ = embed_files(params, paths, chosen, collect_files([path]), heads=heads)
    t1 = time.perf_counter()
    index = corpus_index(paths, chosen, "text", heads, approx)
    t2 = time.perf_counter()
    hits = index.top(aligned.vectors[0], top, candidates)
    t3 = time.perf_counter()
    own = rows[0]
    result = {
        "command": "describe",
        "structure": str(path),
        "structure_id": aligned.ids[0],
        "structure_residues": int(own["length"]),
        "structure_header_names": "; ".join(dict.fromkeys(own["molecule_names"])),
        **chosen.as_json(),
        "candidates": index.source + (f", restricted to split '{split}'" if split else ""),
        "ranking": index.method(candidates),
        "results": results_table(index, hits, text=True),
        "seconds": {
            "embed_structure": round(t1 - t0, 4),
            "load_index": round(t2 - t1, 4),
            "rank": round(t3 - t2, 4),
        },
    }
    if json_out is not None:
        write_json(json_out, result)
    return chosen, result
