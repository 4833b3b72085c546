"""GearNet-Edge speed/memory on real proteins: graph construction and eval forward (proteins/s), peak RSS.

    python benchmarks/bench_gearnet.py [--n 50] [--threads 2] [--batch-size 4]

Each hidden configuration runs in its own subprocess so the reported peak RSS (ru_maxrss) is that configuration's.
Proteins: the first N entries (sorted ids) of the shared corpus that parse, with up to --max-residues residues.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
CONFIGS = {"2x512": [512, 512], "6x512": [512] * 6}


def load(n: int, max_residues: int):
    from protalign.corpus.structures import StructureError, parse_structure

    out = []
    for f in sorted((DATA / "structures").iterdir()):
        try:
            s = parse_structure(f, f.name.split(".")[0]).structure
        except StructureError:
            continue
        if len(s.aa) <= max_residues:
            out.append(s)
        if len(out) == n:
            break
    return out


def run_one(name: str, args) -> dict:
    from protalign.structure.gearnet import GearNetEncoder

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    structs = load(args.n, args.max_residues)
    enc = GearNetEncoder({"hidden_dims": CONFIGS[name]}).eval()
    t0 = time.perf_counter()
    samples = [enc.featurize(s) for s in structs]
    t_graph = time.perf_counter() - t0
    t0 = time.perf_counter()
    with torch.no_grad():
        for i in range(0, len(samples), args.batch_size):
            emb = enc.embed(enc.collate(samples[i : i + args.batch_size]))
    t_fwd = time.perf_counter() - t0
    residues = sum(len(s.aa) for s in structs)
    return {
        "config": name,
        "dim": int(emb.shape[1]),
        "proteins": len(structs),
        "residues": residues,
        "max_residues": max(len(s.aa) for s in structs),
        "edges": sum(int(s["relation"].numel()) for s in samples),
        "graph_proteins_per_s": round(len(structs) / t_graph, 1),
        "forward_proteins_per_s": round(len(structs) / t_fwd, 2),
        "forward_residues_per_s": round(residues / t_fwd, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=50)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--max-residues", type=int, default=1000)
    ap.add_argument("--only", choices=sorted(CONFIGS))
    args = ap.parse_args()
    if args.only:
        print(json.dumps(run_one(args.only, args)))
        return
    for name in CONFIGS:
        cmd = [sys.executable, __file__, "--only", name, "--n", str(args.n), "--threads", str(args.threads),
               "--batch-size", str(args.batch_size), "--max-residues", str(args.max_residues)]  # fmt: skip
        print(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip())


if __name__ == "__main__":
    main()
