"""Text embedding speed and LLM load time (SmolLM2 by default).

Texts are template summaries of real corpus entries (../shared/data/manifest.tsv) where present, else synthetic
ones of the same shape (~55 tokens). Measures texts/s per batch size (forward + pooling, the stage's inner loop)
and first-load time: straight from the GGUF (dequantised every time), converting into an empty cache, and from
the warm cache.

    python benchmarks/bench_embed_text.py [--llm smollm2-135m] [--n 200] [--batch-sizes 16 32] [--threads 2]
                                          [--skip-load] [--out results.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from protalign.paths import Paths  # noqa: E402
from protalign.text import embed as E  # noqa: E402
from protalign.text.llms import load_llm  # noqa: E402
from protalign.text.summarize import template_text  # noqa: E402

MANIFEST = REPO.parent / "shared" / "data" / "manifest.tsv"


def summaries(n: int) -> tuple[list[str], list[str], str]:
    if MANIFEST.exists():
        m = pd.read_csv(MANIFEST, sep="\t", dtype=str, keep_default_na=False).head(n)
        rows = [
            {
                "id": r.pdb_id,
                "length": r.n_residues,
                "n_chains": r.n_chains,
                "molecule_names": [r.molecule_name],
                "organisms": [r.organism.title()],
            }  # fmt: skip
            for r in m.itertuples()
        ]
        source = f"manifest ({len(rows)} real entries)"
    else:
        rows = [
            {
                "id": f"{i:04d}",
                "length": 50 + 7 * i,
                "n_chains": 1 + i % 4,
                "molecule_names": [f"PROTEIN KINASE {i}"],
                "organisms": ["Homo sapiens"],
            }  # fmt: skip
            for i in range(n)
        ]
        source = "synthetic"
    return [r["id"] for r in rows], [template_text(r) for r in rows], source


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--llm", default="smollm2-135m")
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[16, 32])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--pooling", default="last_token")
    ap.add_argument("--skip-load", action="store_true", help="skip the (slow) cold-load measurements")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    results: dict = {"llm": args.llm, "threads": args.threads, "pooling": args.pooling}

    if not args.skip_load:
        _, results["load_gguf_no_cache_s"] = timed(lambda: load_llm(args.llm, use_cache=False))
        with tempfile.TemporaryDirectory() as tmp:
            _, results["load_convert_into_cache_s"] = timed(lambda: load_llm(args.llm, cache=tmp))
            _, results["load_from_cache_s"] = timed(lambda: load_llm(args.llm, cache=tmp))
    llm = load_llm(args.llm, cache=Paths(REPO).cache)

    ids, texts, source = summaries(args.n)
    tokens, _ = E.tokenize(llm, texts, 256)
    lengths = [len(t) for t in tokens]
    results.update(texts=len(texts), source=source, mean_tokens=round(sum(lengths) / len(lengths), 1),
                   max_tokens=max(lengths))  # fmt: skip
    E.embed_texts(llm, ids[:8], texts[:8], args.pooling, 256, 8)  # warm-up
    for bs in args.batch_sizes:
        _, seconds = timed(lambda bs=bs: E.embed_texts(llm, ids, texts, args.pooling, 256, bs))
        results[f"texts_per_s_batch{bs}"] = round(len(texts) / seconds, 1)
        results[f"seconds_batch{bs}"] = round(seconds, 2)
    for key, value in results.items():
        print(f"{key:28s} {value if not isinstance(value, float) else round(value, 2)}")
    if args.out:
        args.out.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
