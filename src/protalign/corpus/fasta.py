"""RCSB-style FASTA: parse/format entity records and derive them from a structure file's header.

The prepare stage takes molecule names, organisms and taxids from these records, so the same format is used
whether the FASTA came from the user or was derived here from SEQRES/COMPND/SOURCE (PDB) or the entity tables
(mmCIF). Derived PDB names stay upper-case as in the file; organisms are sentence-cased like RCSB's.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import gemmi

from protalign.corpus.headers import (
    cif_entities,
    cif_rows,
    detect_format,
    file_entry_id,
    pdb_entities,
    read_text,
)

HEADER_RE = re.compile(
    r"^>(?P<entry>[^_|\s]+)_(?P<entity>[^|\s]+)"  # >1ABC_1
    r"\|Chains?\s+(?P<chains>[^|]*)"  # |Chains A, B[auth C]
    r"\|(?P<name>[^|]*)"  # |MOLECULE NAME
    r"(?:\|(?P<organism>.*?))?\s*$"  # |Organism (taxid)  (optional)
)
_ORGANISM_RE = re.compile(r"^(?P<org>.*?)\s*\((?P<taxid>[0-9, ]+)\)$")
_CHAIN_RE = re.compile(r"^(?P<label>[^\[\]\s]+)(?:\[auth (?P<auth>[^\]\s]+)\])?$")


@dataclass
class FastaEntity:
    """One polymer entity: which chains carry it, what it is, where it comes from, its sequence."""

    entry_id: str
    entity_id: str
    chains: list[str] = field(default_factory=list)
    name: str = ""
    organism: str = ""
    taxid: str = ""
    sequence: str = ""


def _parse_chains(text: str) -> list[str]:
    """`A, B[auth C]` -> ['A', 'C']: the author chain id is what structure files use."""
    chains = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        m = _CHAIN_RE.match(part)
        if not m:
            raise ValueError(f"bad chain list in FASTA header: {text!r}")
        chains.append(m.group("auth") or m.group("label"))
    return chains


def parse_header(line: str) -> FastaEntity:
    m = HEADER_RE.match(line.rstrip("\r\n"))
    if not m:
        raise ValueError(f"not an RCSB-style FASTA header: {line.strip()[:120]!r}")
    organism, taxid = (m.group("organism") or "").strip(), ""
    om = _ORGANISM_RE.match(organism)
    if om:
        organism, taxid = om.group("org").strip(), om.group("taxid").replace(" ", "")
    return FastaEntity(
        entry_id=m.group("entry"),
        entity_id=m.group("entity"),
        chains=_parse_chains(m.group("chains")),
        name=m.group("name").strip(),
        organism=organism,
        taxid=taxid,
    )


def parse_fasta(text: str) -> list[FastaEntity]:
    """All entity records of an RCSB-style FASTA text (a malformed header is an error, not skipped)."""
    entities: list[FastaEntity] = []
    seq: list[str] = []
    for line in text.splitlines():
        if line.startswith(">"):
            if entities:
                entities[-1].sequence = "".join(seq)
            entities.append(parse_header(line))
            seq = []
        elif line.strip():
            if not entities:
                raise ValueError("FASTA sequence line before any '>' header")
            seq.append(line.strip())
    if entities:
        entities[-1].sequence = "".join(seq)
    return entities


def format_fasta(entities: list[FastaEntity], width: int = 80) -> str:
    out = []
    for e in entities:
        word = "Chain" if len(e.chains) == 1 else "Chains"
        org = f"{e.organism} ({e.taxid})" if e.taxid else e.organism
        out.append(f">{e.entry_id}_{e.entity_id}|{word} {', '.join(e.chains)}|{e.name}|{org}")
        out.extend(e.sequence[i : i + width] for i in range(0, len(e.sequence), width))
    return "".join(line + "\n" for line in out)


# ---------------------------------------------------------------- deriving from structure files


def _one_letter(resname: str, modres: dict[str, str] | None = None) -> str:
    """One-letter code; modified residues map to their parent (MODRES record first, then gemmi's table)."""
    resname = (modres or {}).get(resname, resname)
    info = gemmi.find_tabulated_residue(resname)
    code = info.one_letter_code.strip() if info is not None else ""
    return code.upper() if code else "X"  # lower case = modified residue with a standard parent (MSE -> M)


def _entities_from_pdb(text: str, entry_id: str) -> list[FastaEntity]:
    """COMPND/SOURCE entities (headers.py) whose chains have SEQRES; leftover chains -> one entity per sequence."""
    lines = text.splitlines()
    seqres: OrderedDict[str, list[str]] = OrderedDict()
    for line in lines:
        if line.startswith("SEQRES"):
            seqres.setdefault(line[11:12].strip(), []).extend(line[19:80].split())
    modres = {
        x[12:15].strip(): x[24:27].strip() for x in lines if x.startswith("MODRES") and x[24:27].strip()
    }
    header = pdb_entities(text)
    entities: list[FastaEntity] = []
    assigned: set[str] = set()
    for h in header:
        chains = [c for c in h.chains if c in seqres]
        if not chains:
            continue
        sequence = "".join(_one_letter(r, modres) for r in seqres[chains[0]])
        entities.append(FastaEntity(entry_id, h.entity_id, chains, h.name, h.organism, h.taxid, sequence))
        assigned.update(chains)
    # chains without a MOL_ID block (old files: free-text COMPND) -> one entity per distinct sequence
    free_name = header[0].name if len(header) == 1 and not header[0].chains and not entities else ""
    by_seq: OrderedDict[str, list[str]] = OrderedDict()
    for chain, residues in seqres.items():
        if chain not in assigned:
            by_seq.setdefault("".join(_one_letter(r, modres) for r in residues), []).append(chain)
    used = {e.entity_id for e in entities}
    n = 0
    for seq, chains in by_seq.items():
        n += 1
        while str(n) in used:
            n += 1
        entities.append(FastaEntity(entry_id, str(n), [c for c in chains if c], free_name, "", "", seq))
    return entities


def _entities_from_cif(text: str, entry_id: str) -> list[FastaEntity]:
    block = gemmi.cif.read_string(text).sole_block()
    poly_seq: OrderedDict[tuple[str, str], str] = OrderedDict()
    for r in cif_rows(block, "_entity_poly_seq.", ["entity_id", "num", "mon_id"]):
        poly_seq.setdefault((r["entity_id"], r["num"]), r["mon_id"])  # first of a microheterogeneity
    one_letter = {
        r["entity_id"]: re.sub(r"\s+", "", r["pdbx_seq_one_letter_code_can"])
        for r in cif_rows(block, "_entity_poly.", ["entity_id", "pdbx_seq_one_letter_code_can"])
    }
    entities = []
    for h in cif_entities(block):
        if h.entity_id not in one_letter:  # a polymer without _entity_poly is no sequence record
            continue
        seq = one_letter[h.entity_id]
        if not seq:
            seq = "".join(_one_letter(m) for (ent, _), m in poly_seq.items() if ent == h.entity_id)
        entities.append(
            FastaEntity(entry_id, h.entity_id, h.chains, h.name, h.organism, h.taxid, seq.upper())
        )
    return entities


def derive_entities(structure_path: str | Path, entry_id: str | None = None) -> list[FastaEntity]:
    """RCSB-style entity records from a structure file's own header (SEQRES/COMPND/SOURCE or mmCIF tables).

    `entry_id` defaults to the PDB id in the file (HEADER / data_ block). An empty list means the file has no
    sequence records to derive from (the entry is still usable from its coordinates). Unreadable -> ValueError.
    """
    text = read_text(structure_path)
    fmt = detect_format(text)
    if entry_id is None:
        entry_id = file_entry_id(text, fmt) or Path(structure_path).name.split(".")[0].upper()
    try:
        if fmt == "cif":
            return _entities_from_cif(text, entry_id)
        return _entities_from_pdb(text, entry_id)
    except (RuntimeError, ValueError) as exc:
        raise ValueError(f"cannot read {fmt} header: {exc}") from exc
