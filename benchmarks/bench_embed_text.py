"""Text embedding speed per offline LLM, fp32 vs bf16, against the matmul bound; and LLM load time.

Texts are template summaries of real corpus entries (../shared/data/manifest.tsv) where present, else synthetic
ones of the same shape (~55 tokens). For each model and dtype: texts/s (forward + pooling, the stage's inner
loop, token-budget batches, padding included) and the bound = the CPU's measured matmul rate (GFLOP/s, square
float32 / bfloat16 matmuls on the same threads) / (2 x non-embedding parameters x padded tokens per text).
`--load` also times first loads (straight from the GGUF, converting into an empty cache, warm cache).

    python benchmarks/bench_embed_text.py [--llms smollm2-135m gemma3-270m minilm-l6] [--n 200]
                                          [--dtypes float32 bfloat16] [--threads 2] [--load] [--out r.json]
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


def matmul_gflops(dtype: torch.dtype, n: int = 1024, repeats: int = 10) -> float:
    """Best-of sustained rate of an n x n matmul: the CPU's practical ceiling for this dtype and thread count."""
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(repeats):
            torch.mm(a, b)
        best = min(best, (time.perf_counter() - start) / repeats)
    return 2 * n**3 / best / 1e9


def non_embedding_params(model: torch.nn.Module) -> int:
    """Parameters that do matmul work per token (lookup tables excluded: token, position, type embeddings)."""
    lookup = sum(
        p.numel() for m in model.modules() if isinstance(m, torch.nn.Embedding) for p in m.parameters()
    )
    return sum(p.numel() for p in model.parameters()) - lookup


def bench_model(name: str, dtype: str, ids, texts, args, rates: dict) -> dict:
    llm = load_llm(name, cache=Paths(REPO).cache, dtype=dtype)
    pooling = llm.spec.pooling
    E.embed_texts(llm, ids[:8], texts[:8], pooling, 256, 8, batch_tokens=args.batch_tokens)  # warm-up
    (_, stats), seconds = timed(
        lambda: E.embed_texts(llm, ids, texts, pooling, 256, args.batch_size, batch_tokens=args.batch_tokens)
    )
    params = non_embedding_params(llm.model)
    flops_per_text = 2 * params * stats["padded_tokens"] / len(texts)
    bound = rates[dtype] * 1e9 / flops_per_text
    rate = len(texts) / seconds
    return {
        "texts_per_s": round(rate, 1),
        "bound_texts_per_s": round(bound, 1),
        "fraction_of_bound": round(rate / bound, 2),
        "non_embedding_params_M": round(params / 1e6, 1),
        "tokens_per_text": round(stats["tokens"] / len(texts), 1),
        "padding_waste": round(1 - stats["tokens"] / stats["padded_tokens"], 3),
        "pooling": pooling,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--llms", nargs="+", default=["smollm2-135m", "gemma3-270m", "minilm-l6"])
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"])
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--batch-tokens", type=int, default=4096)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--load", action="store_true", help="also time the (slow) cold loads")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rates = {d: round(matmul_gflops(getattr(torch, d)), 1) for d in args.dtypes}
    results: dict = {"threads": args.threads, "matmul_gflops": rates}
    ids, texts, source = summaries(args.n)
    results.update(texts=len(texts), source=source)
    for name in args.llms:
        if args.load:
            load: dict = {}
            _, load["gguf_or_package_no_cache_s"] = timed(
                lambda name=name: load_llm(name, use_cache=False, cache=Paths(REPO).cache)
            )
            with tempfile.TemporaryDirectory() as tmp:
                _, load["into_empty_cache_s"] = timed(lambda name=name, tmp=tmp: load_llm(name, cache=tmp))
            _, load["warm_cache_s"] = timed(lambda name=name: load_llm(name, cache=Paths(REPO).cache))
            results[f"{name}/load"] = {k: round(v, 1) for k, v in load.items()}
        for dtype in args.dtypes:
            results[f"{name}/{dtype}"] = bench_model(name, dtype, ids, texts, args, rates)
    print(json.dumps(results, indent=2))
    if args.out:
        args.out.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
