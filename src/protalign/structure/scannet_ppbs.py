"""Proving a ScanNet import against PPBS (the binding-site benchmark of Tubiana et al.): labels, chains, ROC-AUC.

The corpus store keeps only residues with a CA; ScanNet keeps every standard residue (a CA-less one is placed at
its first atom), so a faithful comparison reads the chain here with ScanNet's rules: first model, one chain,
standard (or modified → parent) residues with all their heavy atoms, first altloc.
"""

from __future__ import annotations

from pathlib import Path

import gemmi
import numpy as np
import torch
from scipy.stats import rankdata

from protalign.corpus.store import ProteinStructure
from protalign.corpus.structures import read_text, residue_kind


def read_labels(path: str | Path) -> dict[str, list[tuple[str, str, str, int]]]:
    """PPBS label file → {"2xhe_0-A": [(chain, residue id, one-letter aa, 0/1), ...]}."""
    out: dict[str, list[tuple[str, str, str, int]]] = {}
    current: list | None = None
    for line in Path(path).read_text().splitlines():
        if line.startswith(">"):
            current = out.setdefault(line[1:].strip(), [])
        elif line.strip():
            if current is None:
                raise ValueError(f"{path}: residue line before any '>' header")
            chain, resid, aa, label = line.split()
            current.append((chain, resid, aa, int(label)))
    return out


def read_chain(path: str | Path, chain: str, pid: str) -> tuple[ProteinStructure, list[str]]:
    """(structure of one chain with ScanNet's residue rules, residue ids "num[icode]")."""
    st = (
        gemmi.read_pdb_string(read_text(path))
        if ".pdb" in Path(path).name
        else gemmi.read_structure(str(path))
    )
    st.remove_hydrogens()
    st.remove_alternative_conformations()
    if chain not in [c.name for c in st[0]]:
        raise ValueError(f"{pid}: no chain {chain!r}")
    aa, ptr, names, elements, xyz, ca, ids = [], [0], [], [], [], [], []
    residues = [res for ch in st[0] if ch.name == chain for res in ch]  # gemmi may split a chain at a TER
    for res in residues:
        is_aa, _, idx = residue_kind(res.name)
        if not is_aa or idx >= 20 or len(res) == 0:
            continue
        first = len(names)
        for a in res:
            names.append(a.name)
            elements.append(a.element.name)
            xyz.append(a.pos.tolist())
        cas = [i for i, a in enumerate(res) if a.name == "CA"]
        ca.append(xyz[first + cas[0]] if cas else xyz[first])
        aa.append(idx)
        ids.append(f"{res.seqid.num}{res.seqid.icode.strip()}")
        ptr.append(len(names))
    r = len(aa)
    structure = ProteinStructure(
        id=pid, chain=np.array([chain] * r), resnum=np.array([int(i.rstrip("ABCDEFGHIJKLMNOPQRSTUVWXYZ")) for i in ids],
        np.int32), resname=np.array(["UNK"] * r), aa=np.array(aa, np.int64), ca=np.array(ca, np.float32).reshape(r, 3),
        atom_ptr=np.array(ptr, np.int64), atom_name=np.array(names), element=np.array(elements),
        xyz=np.array(xyz, np.float32).reshape(-1, 3),
    )  # fmt: skip
    return structure, ids


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Mann-Whitney ROC-AUC (ties averaged)."""
    labels = np.asarray(labels).astype(bool)
    n1, n0 = int(labels.sum()), int((~labels).sum())
    if n1 == 0 or n0 == 0:
        raise ValueError("ROC-AUC needs both classes")
    ranks = rankdata(scores)
    return float((ranks[labels].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def evaluate_chain(encoder, path: str | Path, entry: str, labels: list[tuple[str, str, str, int]]) -> dict:
    """Binding-site ROC-AUC of `encoder` (a ScanNetEncoder with released weights) on one PPBS chain."""
    chain = entry.split("-")[-1]
    structure, ids = read_chain(path, chain, entry)
    sample = encoder.featurize(structure)
    encoder.eval()
    with torch.inference_mode():
        p = encoder.layers(encoder.collate([sample]))["p_binding"].numpy()
    if structure.sequence == "".join(aa for _, _, aa, _ in labels):  # same residues: match by position
        pos: list[int | None] = list(range(len(ids)))  # (label files drop insertion codes)
    else:
        where = {rid: i for i, rid in enumerate(ids)}
        pos = [where.get(rid) for _, rid, _, _ in labels]
    hit = np.array([i is not None for i in pos])
    y = np.array([lab for _, _, _, lab in labels])[hit]
    scores = p[[i for i in pos if i is not None]]
    return {"entry": entry, "n_residues": len(ids), "n_labelled": len(labels), "n_matched": int(hit.sum()),
            "n_positive": int(y.sum()), "auc": roc_auc(y, scores), "mean_p": float(p.mean())}  # fmt: skip
