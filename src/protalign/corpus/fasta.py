"""RCSB-style FASTA: parse/format entity records and derive them from a structure file's header.

The prepare stage takes molecule names, organisms and taxids from these records, so the same format is used
whether the FASTA came from the user or was derived here from SEQRES/COMPND/SOURCE (PDB) or the entity tables
(mmCIF). Derived PDB names stay upper-case as in the file; organisms are sentence-cased like RCSB's.
"""

from __future__ import annotations

import bz2
import gzip
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import gemmi

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


def read_structure_text(path: str | Path) -> str:
    """Decompressed text of a structure file; ValueError with the reason when it cannot be read."""
    path = Path(path)
    raw = path.read_bytes()
    if not raw:
        raise ValueError("empty file")
    try:
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
        elif raw[:3] == b"BZh":
            raw = bz2.decompress(raw)
    except (OSError, EOFError, ValueError) as exc:
        raise ValueError(f"corrupt compressed file ({exc})") from exc
    if b"\x00" in raw[:4096]:
        raise ValueError("binary content, not a PDB/mmCIF text file")
    text = raw.decode("latin-1")
    if not text.strip():
        raise ValueError("empty file")
    return text


def detect_format(text: str) -> str:
    """'cif' or 'pdb' from the content; ValueError when it is neither."""
    for line in text.splitlines()[:200]:
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        if s.startswith("data_"):
            return "cif"
        break
    if re.search(r"^(HEADER|ATOM  |HETATM|SEQRES|COMPND|CRYST1|MODEL )", text[:200000], re.M):
        return "pdb"
    raise ValueError("neither PDB nor mmCIF content")


def _one_letter(resname: str, modres: dict[str, str] | None = None) -> str:
    """One-letter code; modified residues map to their parent (MODRES record first, then gemmi's table)."""
    resname = (modres or {}).get(resname, resname)
    info = gemmi.find_tabulated_residue(resname)
    code = info.one_letter_code.strip() if info is not None else ""
    return code.upper() if code else "X"  # lower case = modified residue with a standard parent (MSE -> M)


def _sentence_case(text: str) -> str:
    """PDB-format organisms are upper-case; RCSB prints them like 'Escherichia coli K12'."""
    if not text or text != text.upper():
        return text
    words = text.lower().split(" ")
    words = [w.upper() if any(c.isdigit() for c in w) else w for w in words]
    out = " ".join(words)
    return out[:1].upper() + out[1:]


def _record_text(lines: list[str]) -> str:
    """Continuation text of a header record; old files carry the id + line number in columns 73-80."""
    old = any(re.fullmatch(r"\w{4}\s+\d+", x[72:80].strip()) for x in lines)
    return " ".join(x[10 : 72 if old else 80].strip() for x in lines)


def _spec_blocks(lines: list[str]) -> list[dict[str, str]]:
    """COMPND/SOURCE continuation text split into MOL_ID blocks of KEY: value (PDB format v3)."""
    text = _record_text(lines)
    blocks: list[dict[str, str]] = []
    for token in text.split(";"):
        key, sep, value = token.partition(":")
        key, value = key.strip().upper(), value.strip()
        if not sep:
            continue
        if key == "MOL_ID" or not blocks:
            blocks.append({})
        blocks[-1][key] = value
    return blocks


def _entities_from_pdb(text: str, entry_id: str) -> list[FastaEntity]:
    lines = text.splitlines()
    seqres: OrderedDict[str, list[str]] = OrderedDict()
    for line in lines:
        if line.startswith("SEQRES"):
            seqres.setdefault(line[11:12].strip(), []).extend(line[19:80].split())
    modres = {
        x[12:15].strip(): x[24:27].strip() for x in lines if x.startswith("MODRES") and x[24:27].strip()
    }
    compnd = _spec_blocks([x for x in lines if x.startswith("COMPND")])
    source = _spec_blocks([x for x in lines if x.startswith("SOURCE")])
    src_by_mol = {b.get("MOL_ID", ""): b for b in source}
    entities: list[FastaEntity] = []
    assigned: set[str] = set()
    for block in compnd:
        chains = [c.strip() for c in block.get("CHAIN", "").split(",") if c.strip() in seqres]
        if not chains:
            continue
        src = src_by_mol.get(block.get("MOL_ID", ""), {})
        taxid = src.get("ORGANISM_TAXID", "").replace(" ", "")
        organism = _sentence_case(src.get("ORGANISM_SCIENTIFIC", ""))
        if not organism and src.get("SYNTHETIC", "").upper().startswith("YES"):
            organism = "synthetic construct"
        entities.append(
            FastaEntity(
                entry_id=entry_id,
                entity_id=block.get("MOL_ID") or str(len(entities) + 1),
                chains=chains,
                name=block.get("MOLECULE", ""),
                organism=organism,
                taxid=taxid,
                sequence="".join(_one_letter(r, modres) for r in seqres[chains[0]]),
            )
        )
        assigned.update(chains)
    # chains without a MOL_ID block (old files: free-text COMPND) -> one entity per distinct sequence
    compnd_lines = [x for x in lines if x.startswith("COMPND")]
    free_name = _record_text(compnd_lines) if not entities and not compnd else ""
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


def _cif_rows(block: gemmi.cif.Block, prefix: str, tags: list[str]) -> list[dict[str, str]]:
    table = block.find(prefix, [tags[0]] + ["?" + t for t in tags[1:]])
    rows = []
    for row in table:
        rows.append({t: gemmi.cif.as_string(row[i]) if row.has(i) else "" for i, t in enumerate(tags)})
    return rows


def _entities_from_cif(text: str, entry_id: str) -> list[FastaEntity]:
    block = gemmi.cif.read_string(text).sole_block()
    names = {r["id"]: r["pdbx_description"] for r in _cif_rows(block, "_entity.", ["id", "pdbx_description"])}
    origin: dict[str, tuple[str, str]] = {}
    for prefix, org_tag, tax_tag in (
        ("_pdbx_entity_src_syn.", "organism_scientific", "ncbi_taxonomy_id"),
        ("_entity_src_nat.", "pdbx_organism_scientific", "pdbx_ncbi_taxonomy_id"),
        ("_entity_src_gen.", "pdbx_gene_src_scientific_name", "pdbx_gene_src_ncbi_taxonomy_id"),
    ):
        for r in _cif_rows(block, prefix, ["entity_id", org_tag, tax_tag]):
            if r["entity_id"] and r["entity_id"] not in origin and (r[org_tag] or r[tax_tag]):
                origin[r["entity_id"]] = (r[org_tag], r[tax_tag])
    poly_seq: OrderedDict[tuple[str, str], str] = OrderedDict()
    for r in _cif_rows(block, "_entity_poly_seq.", ["entity_id", "num", "mon_id"]):
        poly_seq.setdefault((r["entity_id"], r["num"]), r["mon_id"])  # first of a microheterogeneity
    entities = []
    for r in _cif_rows(
        block, "_entity_poly.", ["entity_id", "pdbx_strand_id", "pdbx_seq_one_letter_code_can"]
    ):
        seq = re.sub(r"\s+", "", r["pdbx_seq_one_letter_code_can"])
        if not seq:
            seq = "".join(_one_letter(m) for (ent, _), m in poly_seq.items() if ent == r["entity_id"])
        org, taxid = origin.get(r["entity_id"], ("", ""))
        entities.append(
            FastaEntity(
                entry_id=entry_id,
                entity_id=r["entity_id"],
                chains=[c.strip() for c in r["pdbx_strand_id"].split(",") if c.strip()],
                name=names.get(r["entity_id"], ""),
                organism=org,
                taxid=taxid.replace(" ", ""),
                sequence=seq.upper(),
            )
        )
    return entities


def derive_entities(structure_path: str | Path, entry_id: str | None = None) -> list[FastaEntity]:
    """RCSB-style entity records from a structure file's own header (SEQRES/COMPND/SOURCE or mmCIF tables).

    `entry_id` defaults to the PDB id in the file (HEADER / data_ block). An empty list means the file has no
    sequence records to derive from (the entry is still usable from its coordinates). Unreadable -> ValueError.
    """
    text = read_structure_text(structure_path)
    fmt = detect_format(text)
    if entry_id is None:
        entry_id = file_entry_id(text, fmt) or Path(structure_path).name.split(".")[0].upper()
    try:
        if fmt == "cif":
            return _entities_from_cif(text, entry_id)
        return _entities_from_pdb(text, entry_id)
    except (RuntimeError, ValueError) as exc:
        raise ValueError(f"cannot read {fmt} header: {exc}") from exc


def file_entry_id(text: str, fmt: str) -> str:
    """The PDB id the file declares (HEADER cols 63-66, or the mmCIF block name), '' if none."""
    if fmt == "cif":
        m = re.search(r"^\s*data_(\S+)", text, re.M)
        return m.group(1).upper() if m else ""
    m = re.search(r"^HEADER.*$", text[:10000], re.M)
    return m.group(0)[62:66].strip().upper() if m else ""
