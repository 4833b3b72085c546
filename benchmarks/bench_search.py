"""`protalign search` speed on a synthetic 20k-protein run: index build (cold), cached index load, ranking, and the
text query's LLM forward (which dominates).

The run is synthetic (random GAT-width structure embeddings, random names) but goes through the real code:
`resolve_pair`, the cached `corpus_index`, `AlignedIndex.top`, and `TextQueries` with the real SmolLM2 (skipped
with a reason where the model cannot be loaded). Heads are the default run's when present, else fresh ones.

    python benchmarks/bench_search.py [--n 20000] [--queries 20] [--threads 2] [--out results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from protalign.align.heads import HeadConfig, build_heads, save_heads  # noqa: E402
from protalign.params import load_params  # noqa: E402
from protalign.paths import Paths  # noqa: E402
from protalign.storage import EmbeddingSet, save_embeddings, write_json  # noqa: E402
from protalign.use.index import corpus_index  # noqa: E402
from protalign.use.models import load_pair_heads  # noqa: E402
from protalign.use.pairs import resolve_pair  # noqa: E402
from protalign.use.search import TextQueries, results_table  # noqa: E402

LLM, GDM = "smollm2-135m", "gat"
QUERY = "The protein is named LYSOZYME. It was derived from the organism Gallus gallus (9031)."


def synthetic_run(root: Path, n: int, seed: int = 0) -> Paths:
    paths = Paths(root)
    real_heads = REPO / "models" / "heads" / f"{LLM}__{GDM}.pt"
    if real_heads.exists():
        paths.heads(LLM, GDM).parent.mkdir(parents=True)
        shutil.copy(real_heads, paths.heads(LLM, GDM))
        structure_dim = torch.load(real_heads, weights_only=True)["config"]["structure_dim"]
    else:
        structure_dim = 64
        config = HeadConfig(text_dim=576, structure_dim=structure_dim, dim=576)
        save_heads(paths.heads(LLM, GDM), *build_heads(config, seed), config, {"seed": seed})
    rng = np.random.default_rng(seed)
    ids = [f"S{i:06d}" for i in range(n)]
    vec = rng.normal(size=(n, structure_dim)).astype(np.float32)
    save_embeddings(paths.structure_embeddings(GDM), EmbeddingSet(ids, vec, {"pooling": "mean"}))
    paths.prepared.mkdir(parents=True)
    pd.DataFrame(
        {
            "id": ids,
            "molecule_names": [[f"PROTEIN {i}"] for i in range(n)],
            "organisms": [["Homo sapiens"]] * n,
        }
    ).to_parquet(paths.proteins)
    write_json(paths.metrics(LLM, GDM), {"alignment_score": 0.0, "n_test": 0})
    return paths


def timed(fn, repeat: int = 1) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--queries", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    res: dict[str, object] = {
        "n": args.n,
        "threads": args.threads,
        "torch": torch.__version__,
        "load_average_1m": os.getloadavg()[0],
        "cpus": os.cpu_count(),
    }
    repo_cache = Paths(
        REPO
    ).cache  # the converted SmolLM2, kept between runs (read before the override below)
    with tempfile.TemporaryDirectory() as tmp:
        paths = synthetic_run(Path(tmp) / "repo", args.n)
        os.environ["PROTALIGN_CACHE"] = str(Path(tmp) / "cache")
        pair = resolve_pair(paths, f"{LLM}__{GDM}")
        heads = load_pair_heads(pair)
        res["index_build_cold_s"], _ = timed(lambda: corpus_index(paths, pair, "structure", heads))
        res["index_open_cached_s"], index = timed(lambda: corpus_index(paths, pair, "structure", heads), 5)
        rng = np.random.default_rng(1)
        q = rng.normal(size=index.vectors.shape[1]).astype(np.float32)
        q /= np.linalg.norm(q)
        res["rank_top10_s"], hits = timed(lambda: index.top(q, 10), args.queries)
        test = set(index.ids[: args.n // 10])
        res["rank_top10_split_s"], _ = timed(lambda: index.top(q, 10, test), args.queries)
        res["labels_top10_s"], _ = timed(lambda: results_table(index, hits), args.queries)
        res["answer_without_llm_s"] = res["index_open_cached_s"] + res["rank_top10_s"] + res["labels_top10_s"]
        res["index_mb"] = round(index.vectors.nbytes / 2**20, 1)
        try:
            params = load_params(REPO / "params.yaml")
            os.environ["PROTALIGN_CACHE"] = str(repo_cache)
            # the first load converts the GGUF into the cache where that has not happened yet
            res["llm_load_first_s"], _ = timed(lambda: TextQueries(params, paths, pair, heads))
            res["llm_load_warm_s"], queries = timed(lambda: TextQueries(params, paths, pair, heads))
            res["encode_query_first_s"], _ = timed(lambda: queries.encode(QUERY))
            res["encode_query_s"], _ = timed(lambda: queries.encode(QUERY), args.queries)
            res["answer_with_llm_s"] = res["answer_without_llm_s"] + res["encode_query_s"]
        except (OSError, RuntimeError, ImportError) as exc:
            res["llm_skipped"] = f"{type(exc).__name__}: {exc}"
    for k, v in res.items():
        print(f"{k:24s} {v:.4f}" if isinstance(v, float) else f"{k:24s} {v}")
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
