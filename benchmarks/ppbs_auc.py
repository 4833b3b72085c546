"""ROC-AUC of the released ScanNet_PPI_noMSA weights (ported) on the PPBS validation chains present in the corpus.

python benchmarks/ppbs_auc.py [--reference ../shared/reference/scannet] [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reference", type=Path, default=REPO.parent / "shared" / "reference" / "scannet")
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    args = ap.parse_args()
    torch.set_num_threads(1)
    from protalign.structure import scannet_ppbs as ppbs
    from protalign.structure.scannet import ScanNetEncoder

    enc = ScanNetEncoder({"weights": str(args.reference / "ScanNet_PPI_noMSA.h5")}).eval()
    labels = ppbs.read_labels(args.reference / "PPBS_labels_validation_topology.txt")
    files = {f.name.split(".")[0].upper(): f for f in (args.data / "structures").iterdir()}
    for entry, lab in sorted(labels.items()):
        path = files.get(entry[:4].upper())
        if path is not None:
            print(json.dumps(ppbs.evaluate_chain(enc, path, entry, lab)))


if __name__ == "__main__":
    main()
