"""Structure-side speed on real proteins: graph building (featurize), embedding forward, one training epoch.

Training time for the whole train split is extrapolated from a subset (per-protein step cost × n). Times are wall
and CPU seconds (CPU is robust to other load on the machine). Usage:

    python benchmarks/bench_structure.py [DATA_DIR] [--limit 60] [--threads 1] [--gdm gat] [--train-n 650]
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import random
import time
from pathlib import Path

import torch

from protalign.corpus.structures import StructureError, parse_structure
from protalign.params import load_params
from protalign.structure import registry
from protalign.structure.embed import embed_samples
from protalign.structure.train import featurize_many, pretrain

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


class _DictStore:
    def __init__(self, by_id):
        self.by_id = by_id

    def get(self, pid):
        return self.by_id[pid]


class _Clock:
    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", nargs="?", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--limit", type=int, default=60, help="random real entries to use")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--gdm", default="gat")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--train-n", type=int, default=650, help="train-split size to extrapolate an epoch to")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-train", action="store_true", help="skip the training-epoch measurement")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    params = load_params(args.params)

    with open(args.data / "manifest.tsv") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    rows = random.Random(args.seed).sample(rows, min(args.limit, len(rows)))
    structures = []
    for row in rows:
        try:
            structures.append(parse_structure(args.data / row["structure_file"], row["pdb_id"]).structure)
        except StructureError as exc:
            print(f"skip {row['pdb_id']}: {exc}")
    n_res = sum(len(s) for s in structures)
    print(
        f"{len(structures)} proteins, {n_res} residues (median {sorted(map(len, structures))[len(structures) // 2]})"
    )

    torch.manual_seed(0)
    enc = registry.build(args.gdm, params.structure)
    by_id = {s.id: s for s in structures}
    with _Clock() as c:
        items, skipped = featurize_many(enc, _DictStore(by_id), list(by_id), "featurize")
    samples = [it.sample for it in items]
    n_edges = sum(s["edge_index"].shape[1] for s in samples if "edge_index" in s)  # ScanNet: no graph edges
    print(
        f"featurize (graph + features): {len(structures) / c.wall:.1f} proteins/s wall, "
        f"{len(structures) / c.cpu:.1f}/CPU-s, {n_res / c.wall:.0f} residues/s; {n_edges / n_res:.1f} edges/residue; "
        f"skipped {len(skipped)} {[s['id'] for s in skipped][:5]}"
    )

    with _Clock() as c:
        vectors, skipped = embed_samples(
            enc, samples, params.structure.train.batch_size, max_gb=params.structure.max_embed_gb
        )
    print(
        f"embed forward (batch {params.structure.train.batch_size}): {len(vectors) / c.wall:.1f} proteins/s wall, "
        f"{len(vectors) / c.cpu:.1f}/CPU-s; skipped {len(skipped)} {[s['id'] for s in skipped][:5]}"
    )

    if args.no_train:
        return
    cfg = dataclasses.replace(params.structure.train, epochs=1)
    with _Clock() as c:
        pretrain(enc, items, [], cfg)
    per = c.wall / len(items)
    print(
        f"train 1 epoch (crop {cfg.max_residues}, batch {cfg.batch_size}): {c.wall:.2f} s wall / "
        f"{c.cpu:.2f} CPU-s for {len(samples)} proteins -> {per * 1000:.1f} ms/protein; "
        f"~{per * args.train_n:.1f} s/epoch for {args.train_n}, ~{per * args.train_n * params.structure.train.epochs:.0f}"
        f" s for {params.structure.train.epochs} epochs (+ val)"
    )


if __name__ == "__main__":
    main()
