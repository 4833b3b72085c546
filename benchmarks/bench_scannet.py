"""ScanNet speed/memory on the shared corpus: frames+neighbourhoods (featurize) and eval forward, proteins/s, peak RSS.

    python benchmarks/bench_scannet.py [--n 815] [--threads 2] [--batch-size 8] [--weights ScanNet_PPI_noMSA.h5]

Parsing is excluded (the pipeline reads the packed store). Every protein is embedded, however large.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=815)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--weights", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from protalign.corpus.structures import StructureError, parse_structure
    from protalign.structure.embed import sample_chunks
    from protalign.structure.scannet import ScanNetEncoder

    structures, parse_fail = [], 0
    for f in sorted((DATA / "structures").iterdir())[: args.n]:
        try:
            structures.append(parse_structure(f, f.name.split(".")[0]).structure)
        except StructureError:
            parse_fail += 1
    torch.manual_seed(0)
    enc = ScanNetEncoder({"pooling": "mean", "weights": args.weights}).eval()
    t0 = time.perf_counter()
    samples, skipped = [], []
    for s in structures:
        try:
            samples.append(enc.featurize(s))
        except ValueError as exc:
            skipped.append((s.id, str(exc)))
    t_feat = time.perf_counter() - t0
    t0 = time.perf_counter()
    with torch.inference_mode():
        for chunk in sample_chunks(samples, args.batch_size, 20_000):
            enc.embed(enc.collate(chunk))
    t_fwd = time.perf_counter() - t0
    n = len(samples)
    res = sum(s["num_nodes"] for s in samples)
    print(json.dumps({
        "proteins": n, "residues": res, "atoms": sum(s["num_atoms"] for s in samples),
        "max_residues": max(s["num_nodes"] for s in samples), "parse_failed": parse_fail, "skipped": skipped,
        "threads": args.threads, "featurize_s": round(t_feat, 1), "featurize_proteins_per_s": round(n / t_feat, 1),
        "forward_s": round(t_fwd, 1), "forward_proteins_per_s": round(n / t_fwd, 2),
        "total_s": round(t_feat + t_fwd, 1), "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2),
    }, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
