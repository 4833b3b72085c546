"""The sequence-blind structure ablation (`structure.residue_types: false`): geometry without amino-acid identities.

One transform of the stored structure, applied before any encoder featurizes it (`StructureEncoder.
input_structure`), so no encoder can see a type through a side door: every residue becomes unknown (index 20,
resname UNK) and keeps only its backbone atoms N, CA, C, O (side chains, even CB, reveal the type; OXT is
dropped too). What remains is what each GDM reads of the backbone: Cα positions (GAT graph, GearNet, distance and
angle tasks), N/CA/C (GAT dihedrals, GVP frames) and the typed backbone atoms of ScanNet, whose atom classes then
come from the type-free row (the one it uses for masked residues).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from protalign.corpus.store import ProteinStructure

UNKNOWN_TYPE = 20  # the store's "unknown residue" index
BLIND_ATOMS = ("N", "CA", "C", "O")


def sequence_blind(structure: ProteinStructure) -> ProteinStructure:
    """A copy with every residue type unknown and only backbone atoms left (per-residue order unchanged)."""
    n_res = len(structure)
    ptr = np.asarray(structure.atom_ptr, dtype=np.int64)
    keep = np.isin(np.asarray(structure.atom_name, dtype=str), BLIND_ATOMS)
    residue = np.repeat(np.arange(n_res), np.diff(ptr))
    counts = np.bincount(residue[keep], minlength=n_res)
    return dataclasses.replace(
        structure,
        resname=np.full(n_res, "UNK", dtype=np.asarray(structure.resname).dtype if n_res else "<U3"),
        aa=np.full(n_res, UNKNOWN_TYPE, dtype=np.int64),
        atom_ptr=np.concatenate([[0], np.cumsum(counts)]).astype(np.asarray(structure.atom_ptr).dtype),
        atom_name=np.asarray(structure.atom_name)[keep],
        element=np.asarray(structure.element)[keep],
        xyz=np.asarray(structure.xyz)[keep],
    )
