"""The one reader of structure-file text and header records (PDB COMPND/SOURCE, mmCIF entity tables).

`fetch` derives RCSB-style FASTA from these records (fasta.py) and `prepare` falls back on them where a FASTA lacks
a field (structures.py); both call this module, so a name or organism cannot differ between the two.

Rules kept (RCSB's FASTA headers are the reference: `>2RH1_1|Chain A|...|Homo sapiens, Tequatrovirus T4 (9606, 10665)`):
- an entity with several source organisms (chimeras) keeps ALL of them, in file order: organisms joined with
  ", ", taxids joined with "," — never only the first or only the last;
- PDB-format organisms are upper-case in the file; each comma-separated organism is sentence-cased like RCSB's
  ("ESCHERICHIA COLI K12" -> "Escherichia coli K12"); mmCIF names are kept as written;
- `SYNTHETIC: YES` without a scientific name is "synthetic construct" (RCSB's name for it);
- pre-1996 files carry "<ID> <serial>" in columns 73-80: it is cut per line; free-text COMPND (no MOL_ID) is one
  entity without chains whose name is the whole text.
"""

from __future__ import annotations

import bz2
import math
import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import gemmi

EC_RE = re.compile(r"\d+\.(?:\d+|-)\.(?:\d+|-)\.(?:n?\d+|-)")
_OLD_SERIAL = re.compile(r"^[0-9A-Z]{4}\s*\d+$")
_SPEC_LINES = re.compile(r"^(?:COMPND|SOURCE).*$", re.M)
SYNTHETIC = "synthetic construct"
# culture collections and abbreviations NCBI taxonomy names write upper-case ("Archaeoglobus fulgidus DSM 4304")
_ACRONYMS = frozenset(
    "ATCC DSM NCTC NCIMB JCM NBRC IFO CBS NRRL CCUG LMG IAM KCTC CIP PCC CECT VKM SARS".split()
)


class StructureError(ValueError):
    """The file cannot be used; `reason` is the short text written to skipped.csv."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class HeaderEntity:
    """A polymer entity as the file header describes it."""

    entity_id: str = ""
    chains: list[str] = field(default_factory=list)
    name: str = ""
    organism: str = ""
    taxid: str = ""
    ec: list[str] = field(default_factory=list)


# ---- file text --------------------------------------------------------------------------------------------------


def _decompress(raw: bytes, kind: str, limit: int) -> bytes:
    """Stream-decompress at most `limit` bytes (a tiny file may inflate to gigabytes); truncation is an error."""
    out, total = [], 0
    while raw:
        d = zlib.decompressobj(wbits=47) if kind == "gzip" else bz2.BZ2Decompressor()
        chunk = d.decompress(raw, limit + 1 - total)
        out.append(chunk)
        total += len(chunk)
        if total > limit:
            raise StructureError(f"file too large (over {limit / 1e6:g} MB uncompressed)")
        if not d.eof:
            raise StructureError(f"{kind} truncated or corrupt (stream ends early)")
        raw = d.unused_data  # concatenated members
    return b"".join(out)


def _check_size(size: int, max_mb: float) -> int:
    """The byte limit of `max_mb`; a file of `size` bytes over it is a StructureError."""
    limit = int(min(max_mb * 1e6, 2**62))
    if size > limit:
        raise StructureError(f"file too large ({size / 1e6:.1f} MB > {max_mb:g} MB)")
    return limit


def read_text(path: str | Path, max_mb: float = math.inf) -> str:
    """File text, transparently decompressed; too large, truncated/corrupt and binary files are StructureErrors."""
    path = Path(path)
    _check_size(path.stat().st_size, max_mb)  # before reading: a huge file is refused without loading it
    return decode_text(path.read_bytes(), max_mb)


def decode_text(raw: bytes, max_mb: float = math.inf) -> str:
    """`read_text` for bytes already in memory (a file shipped to a Ray worker): the same checks, the same text."""
    limit = _check_size(len(raw), max_mb)
    if raw[:2] == b"\x1f\x8b" or raw[:3] == b"BZh":
        kind = "gzip" if raw[:2] == b"\x1f\x8b" else "bzip2"
        try:
            raw = _decompress(raw, kind, limit)
        except (EOFError, OSError, ValueError, zlib.error) as e:
            if isinstance(e, StructureError):
                raise
            raise StructureError(f"{kind} truncated or corrupt ({type(e).__name__})") from e
    if not raw.strip():
        raise StructureError("empty file")
    if b"\x00" in raw[:4096]:
        raise StructureError("binary data, not a structure file")
    return raw.decode("utf-8", errors="replace")


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


def file_entry_id(text: str, fmt: str) -> str:
    """The PDB id the file declares (HEADER cols 63-66, or the mmCIF block name), '' if none."""
    if fmt == "cif":
        m = re.search(r"^\s*data_(\S+)", text, re.M)
        return m.group(1).upper() if m else ""
    m = re.search(r"^HEADER.*$", text[:10000], re.M)
    return m.group(0)[62:66].strip().upper() if m else ""


# ---- organisms --------------------------------------------------------------------------------------------------


def _keep_upper(word: str) -> bool:
    return any(c.isdigit() for c in word) or word.strip("()/").upper() in _ACRONYMS


def sentence_case(organism: str) -> str:
    """'HOMO SAPIENS, ESCHERICHIA COLI K12' -> 'Homo sapiens, Escherichia coli K12' (words with digits and strain
    collection acronyms stay upper); text that is not all upper-case is returned unchanged."""
    if not organism or organism != organism.upper():
        return organism
    parts = []
    for part in organism.split(","):
        words = [w.upper() if _keep_upper(w) else w for w in part.strip().lower().split(" ")]
        text = " ".join(words)
        parts.append(text[:1].upper() + text[1:])
    return ", ".join(parts)


def join_sources(organisms: list[str], taxids: list[str]) -> tuple[str, str]:
    """All source organisms of one entity -> ('Org1, Org2', 'tax1,tax2'): file order, repeats and blanks dropped
    (a chimera split into three segments from two species names two)."""
    orgs = [sentence_case(" ".join(o.split())) for o in organisms]
    taxa = [t.strip() for t in taxids]
    return ", ".join(dict.fromkeys(o for o in orgs if o)), ",".join(dict.fromkeys(t for t in taxa if t))


# ---- PDB format ---------------------------------------------------------------------------------------------------


def record_text(lines: list[str]) -> str:
    """Continuation text of one record type: columns 11-80 joined, whitespace collapsed.

    Pre-1996 files number EVERY line "<ID> <serial>" in columns 73-80; only then are those columns cut (a modern
    line whose text merely ends in "ATCC 39541" keeps it).
    """
    old = bool(lines) and all(_OLD_SERIAL.match(x[72:80].strip()) for x in lines)
    return " ".join(" ".join(x[10 : 72 if old else 80].split()) for x in lines).strip()


def spec_records(lines: list[str], record: str) -> list[dict[str, str]]:
    """COMPND/SOURCE specification lists ("MOL_ID: 1; MOLECULE: X; CHAIN: A, B;") -> one dict per MOL_ID.

    Free text without any "KEY:" (very old files) -> one dict {"MOLECULE": text, "EC": text} with no CHAIN.
    """
    text = record_text([line for line in lines if line.startswith(record)])
    if ":" not in text:
        free = " ".join(text.split())
        return [{"MOLECULE": free, "EC": free}] if free else []
    groups: list[dict[str, str]] = []
    for token in text.split(";"):
        key, sep, value = token.partition(":")
        key = key.strip().upper()
        if not sep or not key:
            continue
        if key == "MOL_ID" or not groups:
            groups.append({})
        groups[-1][key] = " ".join(value.split())
    return groups


def _pdb_source(src: dict[str, str]) -> tuple[str, str]:
    organism, taxid = join_sources(
        src.get("ORGANISM_SCIENTIFIC", "").split(","), src.get("ORGANISM_TAXID", "").split(",")
    )
    if not organism and src.get("SYNTHETIC", "").upper().startswith("YES"):
        organism = SYNTHETIC
    return organism, taxid


def pdb_entities(text: str) -> list[HeaderEntity]:
    """Entities of a PDB-format header: COMPND blocks joined to SOURCE blocks by MOL_ID (else by position)."""
    lines = _SPEC_LINES.findall(text)
    compnd = spec_records(lines, "COMPND")
    sources = spec_records(lines, "SOURCE")
    by_mol = {g["MOL_ID"]: g for g in sources if "MOL_ID" in g}
    entities = []
    for n, g in enumerate(compnd):
        mol = g.get("MOL_ID", "")
        src = by_mol.get(mol) if mol else None
        if src is None:
            src = sources[n] if n < len(sources) else {}
        organism, taxid = _pdb_source(src)
        chains = [
            c.strip() for c in g.get("CHAIN", "").split(",") if c.strip() and c.strip().upper() != "NULL"
        ]
        ec = EC_RE.findall(g.get("EC", ""))
        entities.append(HeaderEntity(mol or str(n + 1), chains, g.get("MOLECULE", ""), organism, taxid, ec))
    return entities


# ---- mmCIF ------------------------------------------------------------------------------------------------------

_CIF_SOURCES = (
    ("_pdbx_entity_src_syn.", "organism_scientific", "ncbi_taxonomy_id"),
    ("_entity_src_nat.", "pdbx_organism_scientific", "pdbx_ncbi_taxonomy_id"),
    ("_entity_src_gen.", "pdbx_gene_src_scientific_name", "pdbx_gene_src_ncbi_taxonomy_id"),
)


def cif_rows(block: gemmi.cif.Block, prefix: str, tags: list[str]) -> list[dict[str, str]]:
    """Rows of one category as dicts (a loop or single values alike); absent optional tags -> ''."""
    table = block.find(prefix, [tags[0]] + [f"?{t}" for t in tags[1:]])
    return [
        {t: gemmi.cif.as_string(row[i]) if row.has(i) else "" for i, t in enumerate(tags)} for row in table
    ]


def _atom_site_chains(block: gemmi.cif.Block) -> dict[str, list[str]]:
    """entity id -> author chain ids in file order, from _atom_site (when _entity_poly names no strands)."""
    out: dict[str, list[str]] = {}
    for r in cif_rows(block, "_atom_site.", ["label_entity_id", "auth_asym_id"]):
        chains = out.setdefault(r["label_entity_id"], [])
        if r["auth_asym_id"] not in chains:
            chains.append(r["auth_asym_id"])
    return out


def cif_entities(block: gemmi.cif.Block) -> list[HeaderEntity]:
    """Polymer entities of an mmCIF block: _entity + _entity_poly strands + every _*src* row of the entity."""
    sources: dict[str, list[tuple[str, str]]] = {}
    for prefix, org, tax in _CIF_SOURCES:
        for r in cif_rows(block, prefix, ["entity_id", org, tax]):
            sources.setdefault(r["entity_id"], []).append((r[org], r[tax]))
    strands = {
        r["entity_id"]: [c.strip() for c in r["pdbx_strand_id"].split(",") if c.strip()]
        for r in cif_rows(block, "_entity_poly.", ["entity_id", "pdbx_strand_id"])
    }
    fallback: dict[str, list[str]] | None = None
    entities = []
    for r in cif_rows(block, "_entity.", ["id", "type", "pdbx_description", "pdbx_ec"]):
        if r["type"] != "polymer":
            continue
        chains = strands.get(r["id"], [])
        if not chains:
            fallback = _atom_site_chains(block) if fallback is None else fallback
            chains = fallback.get(r["id"], [])
        rows = sources.get(r["id"], [])
        organism, taxid = join_sources([o for o, _ in rows], [t for _, t in rows])
        ec = EC_RE.findall(r["pdbx_ec"])
        entities.append(HeaderEntity(r["id"], chains, r["pdbx_description"], organism, taxid, ec))
    return entities
