"""Parse ONE structure file (PDB or mmCIF, gzipped or not) into protein residues, heavy atoms and header fields.

gemmi reads coordinates (chosen over Biopython by benchmarks/bench_parse.py: faster, and it survives the corpus
file whose ANISOU line breaks Biopython 1.88). Header records gemmi does not keep (COMPND/SOURCE, mmCIF entity
tables) are read by headers.py (the same reader `fetch` derives FASTA with) from the text decompressed here once. Every reason a file is unusable is a
`StructureError` with a short reason that `prepare` records in skipped.csv.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import gemmi
import numpy as np

from protalign.corpus.headers import (
    HeaderEntity,
    StructureError,
    cif_entities,
    decode_text,
    pdb_entities,
    read_text,
)
from protalign.corpus.store import AA_ORDER, UNKNOWN_AA, ProteinStructure

THREE = dict(
    zip(
        AA_ORDER,
        "ALA CYS ASP GLU PHE GLY HIS ILE LYS LEU MET ASN PRO GLN ARG SER THR VAL TRP TYR".split(),
        strict=True,
    )
)


@dataclass
class ParsedEntry:
    structure: ProteinStructure
    method: str = ""
    resolution: float = math.nan
    title: str = ""
    classification: str = ""
    ec_numbers: list[str] = field(default_factory=list)
    entities: list[HeaderEntity] = field(default_factory=list)
    n_dropped_no_ca: int = 0

    @property
    def chains(self) -> list[str]:
        return list(dict.fromkeys(self.structure.chain.tolist()))


@lru_cache(maxsize=4096)
def residue_kind(name: str) -> tuple[bool, str, int]:
    """(is amino acid, parent 3-letter name, aa index) from gemmi's residue table; MSE -> (True, MET, 10)."""
    info = gemmi.find_tabulated_residue(name)
    if info is None or not info.is_amino_acid():
        return False, name, UNKNOWN_AA
    letter = info.one_letter_code.upper()
    if letter in THREE:
        return True, THREE[letter], AA_ORDER.index(letter)
    return True, name, UNKNOWN_AA


def _pick_conformer(residues: list[gemmi.Residue]) -> gemmi.Residue:
    """Microheterogeneity (two residue types at one position): keep the most occupied, first on ties."""
    if len(residues) == 1:
        return residues[0]
    occ = [sum(a.occ for a in r) / max(len(r), 1) for r in residues]
    return residues[int(np.argmax(occ))]


def _heavy_atoms(res: gemmi.Residue) -> list[gemmi.Atom]:
    """Heavy atoms of one residue with alternate locations resolved to the most occupied one (first on ties).

    The altloc is chosen per residue (mean occupancy) so side chains are not mixed across conformers; an atom
    absent from the chosen altloc falls back to its own most occupied copy.
    """
    atoms = list(res)  # hydrogens were removed structure-wide (faster in C++)
    names = [a.name for a in atoms]
    if len(set(names)) == len(names):  # no atom name twice: nothing to choose between
        return atoms
    occ: dict[str, list[float]] = {}
    for a in atoms:
        if a.altloc != "\0":
            occ.setdefault(a.altloc, []).append(a.occ)
    if not occ:  # duplicated atoms without altloc ids (broken files): first copy of each name
        first: dict[str, gemmi.Atom] = {}
        for a in atoms:
            first.setdefault(a.name, a)
        return list(first.values())
    best_alt = max(occ, key=lambda k: sum(occ[k]) / len(occ[k]))  # max() keeps the first on ties
    chosen: dict[str, gemmi.Atom] = {}
    for a in atoms:
        prev = chosen.get(a.name)
        if prev is None:
            chosen[a.name] = a
        elif prev.altloc != best_alt and (a.altloc == best_alt or a.occ > prev.occ):
            chosen[a.name] = a
    return list(chosen.values())


def extract_protein(st: gemmi.Structure, entry_id: str) -> tuple[ProteinStructure, int]:
    """Model 1 protein residues that have a CA, in file order; returns (structure, residues dropped for no CA)."""
    if len(st) == 0 or st[0].count_atom_sites() == 0:
        raise StructureError("no atom records (not a structure file?)")
    while len(st) > 1:  # first model only
        del st[len(st) - 1]
    st.remove_hydrogens()
    st.setup_entities()
    modres = {(m.chain_name, str(m.res_id.seqid)): m.parent_comp_id for m in st.mod_residues}
    chain, resnum, resname, aa, ca, names, elements, xyz, ptr = [], [], [], [], [], [], [], [], [0]
    dropped = n_protein = 0
    for ch in st[0]:
        groups: list[list[gemmi.Residue]] = []
        for res in ch:
            if res.entity_type in (gemmi.EntityType.Water, gemmi.EntityType.NonPolymer):
                continue
            if groups and groups[-1][0].seqid == res.seqid:
                groups[-1].append(res)
            else:
                groups.append([res])
        for group in groups:
            res = _pick_conformer(group)
            is_aa, parent, idx = residue_kind(res.name)
            if not is_aa and (ch.name, str(res.seqid)) in modres:
                is_aa, parent, idx = residue_kind(modres[(ch.name, str(res.seqid))])
            if not is_aa:
                continue
            n_protein += 1
            atoms = _heavy_atoms(res)
            ca_atom = next((a for a in atoms if a.name == "CA" and a.element.name == "C"), None)
            if ca_atom is None:
                dropped += 1
                continue
            chain.append(ch.name)
            resnum.append(res.seqid.num)
            resname.append(parent)
            aa.append(idx)
            ca.append(ca_atom.pos.tolist())
            for a in atoms:
                names.append(a.name)
                elements.append(a.element.name)
                xyz.append(a.pos.tolist())
            ptr.append(len(names))
    if n_protein == 0:
        raise StructureError("no protein chain")
    if not chain:
        raise StructureError("no CA atoms")
    ps = ProteinStructure(
        id=entry_id,
        chain=np.array(chain, dtype=str),
        resnum=np.array(resnum, dtype=np.int32),
        resname=np.array(resname, dtype=str),
        aa=np.array(aa, dtype=np.int64),
        ca=np.array(ca, dtype=np.float32).reshape(-1, 3),
        atom_ptr=np.array(ptr, dtype=np.int64),
        atom_name=np.array(names, dtype=str),
        element=np.char.upper(np.array(elements, dtype=str)),
        xyz=np.array(xyz, dtype=np.float32).reshape(-1, 3),
    )
    return ps, dropped


def _resolution(st: gemmi.Structure, block: gemmi.cif.Block | None) -> float:
    if st.resolution > 0:
        return float(st.resolution)
    if block is not None:
        for tag in ("_refine.ls_d_res_high", "_reflns.d_resolution_high", "_em_3d_reconstruction.resolution"):
            value = block.find_value(tag)
            try:
                return float(gemmi.cif.as_string(value)) if value else math.nan
            except ValueError:
                continue
    return math.nan


def _read_pdb(text: str) -> gemmi.Structure:
    """gemmi PDB reader; old files with junk in columns 77-80 (e.g. a serial where the charge goes) are re-read
    ignoring those columns, so gemmi infers elements from atom names instead of failing the whole entry."""
    try:
        return gemmi.read_pdb_string(text)
    except RuntimeError as e:
        if "charge" not in str(e) and "element" not in str(e):
            raise
        return gemmi.read_pdb_string(text, max_line_length=76)


def parse_structure(
    path: str | Path, entry_id: str, fmt: str | None = None, max_mb: float = math.inf, raw: bytes | None = None
) -> ParsedEntry:
    """Read one file (or its bytes `raw`, `path` then only naming it) into a ParsedEntry; unusable files raise
    StructureError (reason for skipped.csv)."""
    path = Path(path)
    text = read_text(path, max_mb) if raw is None else decode_text(raw, max_mb)
    is_cif = (
        fmt in ("cif", "mmcif") if fmt else (".cif" in path.name.lower() or text.lstrip().startswith("data_"))
    )
    block = None
    try:
        if is_cif:
            block = gemmi.cif.read_string(text).sole_block()
            st = gemmi.make_structure_from_block(block)
        else:
            st = _read_pdb(text)
    except (RuntimeError, ValueError, IndexError) as e:
        raise StructureError(
            f"unreadable {'mmCIF' if is_cif else 'PDB'}: {str(e).splitlines()[0][:120]}"
        ) from e
    structure, dropped = extract_protein(st, entry_id)
    entities = cif_entities(block) if block is not None else pdb_entities(text)
    ecs = [ec for e in entities for ec in e.ec]
    info = dict(st.info)
    return ParsedEntry(
        structure=structure,
        method=info.get("_exptl.method", "") or "",
        resolution=_resolution(st, block),
        title=" ".join((info.get("_struct.title", "") or "").split()),
        classification=info.get("_struct_keywords.pdbx_keywords", "") or "",
        ec_numbers=list(dict.fromkeys(ecs)),
        entities=entities,
        n_dropped_no_ca=dropped,
    )
