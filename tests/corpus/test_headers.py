"""The one header parser: COMPND/SOURCE and mmCIF entity tables, read the same way by fetch and prepare."""

from __future__ import annotations

import gemmi
import pytest

from protalign.corpus import headers as H
from protalign.corpus.fasta import derive_entities
from protalign.corpus.structures import parse_structure


def _record(name: str, texts: list[str], tail: list[str] | None = None) -> str:
    """PDB-format lines: record name, continuation number in columns 8-10, text from column 11, optional 73-80."""
    out = []
    for i, text in enumerate(texts):
        cont = "   " if i == 0 else f"{i + 1:>3}"
        line = f"{name:<6} {cont}{text}".ljust(72)[:72] if tail else f"{name:<6} {cont}{text}"
        out.append(line + (tail[i] if tail else ""))
    return "\n".join(out) + "\n"


CHIMERA = _record(
    "COMPND",
    [" MOL_ID: 1;", " MOLECULE: BETA-2-ADRENERGIC RECEPTOR/T4-LYSOZYME", " CHIMERA;", " CHAIN: A;",
     " EC: 3.2.1.17;", " MOL_ID: 2;", " MOLECULE: NANOBODY;", " CHAIN: B, C;"],
) + _record(
    "SOURCE",
    [" MOL_ID: 1;", " ORGANISM_SCIENTIFIC: HOMO SAPIENS, ENTEROBACTERIA PHAGE T4, HOMO", " SAPIENS;",
     " ORGANISM_TAXID: 9606, 10665, 9606;", " MOL_ID: 2;", " SYNTHETIC: YES;"],
)  # fmt: skip


def test_pdb_chimera_keeps_every_organism_once_in_file_order():
    ents = H.pdb_entities(CHIMERA)
    assert [(e.entity_id, e.chains, e.name) for e in ents] == [
        (
            "1",
            ["A"],
            "BETA-2-ADRENERGIC RECEPTOR/T4-LYSOZYME CHIMERA",
        ),  # continuation joined, spaces collapsed
        ("2", ["B", "C"], "NANOBODY"),
    ]
    assert (ents[0].organism, ents[0].taxid, ents[0].ec) == (
        "Homo sapiens, Enterobacteria phage T4", "9606,10665", ["3.2.1.17"]
    )  # fmt: skip
    assert (ents[1].organism, ents[1].taxid) == ("synthetic construct", "")


def test_source_matched_by_mol_id_not_position():
    text = _record("COMPND", [" MOL_ID: 1;", " MOLECULE: X;", " CHAIN: A;", " MOL_ID: 2;", " MOLECULE: Y;",
                              " CHAIN: B;"]) + _record(
        "SOURCE", [" MOL_ID: 2;", " ORGANISM_SCIENTIFIC: MUS MUSCULUS;", " ORGANISM_TAXID: 10090;",
                   " MOL_ID: 1;", " ORGANISM_SCIENTIFIC: ESCHERICHIA COLI K12;", " ORGANISM_TAXID: 83333;"])  # fmt: skip
    ents = H.pdb_entities(text)
    assert [(e.name, e.organism, e.taxid) for e in ents] == [
        ("X", "Escherichia coli K12", "83333"),
        ("Y", "Mus musculus", "10090"),
    ]


def test_old_serial_columns_cut_only_when_every_line_has_them():
    old = _record("COMPND", [" LYSOZYME (E.C.3.2.1.17) MUTANT", " WITH THR 26 REPLACED BY GLU"],
                  tail=["1ABC   4", "1ABC   5"])  # fmt: skip
    (ent,) = H.pdb_entities(old)
    assert (ent.name, ent.chains) == ("LYSOZYME (E.C.3.2.1.17) MUTANT WITH THR 26 REPLACED BY GLU", [])
    assert ent.ec == ["3.2.1.17"]  # free text: EC numbers found anywhere in it
    first = "SOURCE    MOL_ID: 1;"
    full = (
        "SOURCE   2 ORGANISM_SCIENTIFIC: VIBRIO CHOLERAE (STRAIN".ljust(72) + "ATCC 123"
    )  # looks like a serial
    src = H.spec_records([first, full, "SOURCE   3 / O395);"], "SOURCE")
    assert src[0]["ORGANISM_SCIENTIFIC"] == "VIBRIO CHOLERAE (STRAIN ATCC 123 / O395)"


@pytest.mark.parametrize(
    "raw, want",
    [
        ("HOMO SAPIENS", "Homo sapiens"),
        ("ESCHERICHIA COLI K12", "Escherichia coli K12"),
        ("ARCHAEOGLOBUS FULGIDUS DSM 4304", "Archaeoglobus fulgidus DSM 4304"),
        ("HOMO SAPIENS, ESCHERICHIA COLI", "Homo sapiens, Escherichia coli"),
        ("Homo sapiens", "Homo sapiens"),  # mmCIF: kept as written
    ],
)
def test_sentence_case(raw, want):
    assert H.sentence_case(raw) == want


CIF = """data_1ABC
loop_
_entity.id
_entity.type
_entity.pdbx_description
_entity.pdbx_ec
1 polymer 'A2A receptor/cytochrome b562 chimera' ?
2 polymer 'Fab heavy chain' 3.4.21.4
3 non-polymer 'SODIUM ION' ?
loop_
_entity_poly.entity_id
_entity_poly.pdbx_strand_id
1 A
2 'H,L'
loop_
_entity_src_gen.entity_id
_entity_src_gen.pdbx_src_id
_entity_src_gen.pdbx_gene_src_scientific_name
_entity_src_gen.pdbx_gene_src_ncbi_taxonomy_id
1 1 'Homo sapiens' 9606
1 2 'Escherichia coli' 562
1 3 'Homo sapiens' 9606
_entity_src_nat.entity_id 2
_entity_src_nat.pdbx_organism_scientific 'MUS MUSCULUS'
_entity_src_nat.pdbx_ncbi_taxonomy_id 10090
"""


def test_cif_loops_and_single_value_categories():
    ents = H.cif_entities(gemmi.cif.read_string(CIF).sole_block())
    assert [(e.entity_id, e.chains, e.name, e.organism, e.taxid, e.ec) for e in ents] == [
        (
            "1",
            ["A"],
            "A2A receptor/cytochrome b562 chimera",
            "Homo sapiens, Escherichia coli",
            "9606,562",
            [],
        ),
        ("2", ["H", "L"], "Fab heavy chain", "Mus musculus", "10090", ["3.4.21.4"]),
    ]


def test_text_errors_and_format(tmp_path):
    p = tmp_path / "x.pdb"
    p.write_bytes(b"\x1f\x8b\x08\x00broken")
    with pytest.raises(H.StructureError, match="gzip"):
        H.read_text(p)
    assert H.detect_format("data_1ABC\n_cell.length_a 1\n") == "cif"
    assert H.detect_format(CHIMERA) == "pdb"
    assert H.file_entry_id("HEADER    HYDROLASE" + " " * 43 + "2RH1\n", "pdb") == "2RH1"


@pytest.mark.parametrize(
    "entry, chain, organism, taxid",
    [
        ("2RH1", "A", "Homo sapiens, Enterobacteria phage T4", "9606,10665"),  # PDB chimera
        ("4EIY", "A", "Homo sapiens, Escherichia coli", "9606,562"),  # mmCIF, three _entity_src_gen rows
        (
            "6EHB",
            "A",
            "Vibrio cholerae serotype O1 (strain ATCC 39541 / classical ogawa 395 / O395)",
            "345073",
        ),
        ("11AS", "A", "Escherichia coli K12", "83333"),
    ],
)
def test_real_headers_same_in_fetch_and_prepare(shared_data, entry, chain, organism, taxid):
    """fetch's derived FASTA and prepare's header fallback read one parser: same organism and taxid."""
    path = next((shared_data / "structures").glob(f"{entry}.*"))
    derived = next(e for e in derive_entities(path, entry) if chain in e.chains)
    parsed = next(e for e in parse_structure(path, entry).entities if chain in e.chains)
    assert (derived.organism, derived.taxid) == (parsed.organism, parsed.taxid) == (organism, taxid)
    assert derived.name == parsed.name


def test_real_old_file_serial_columns(shared_data):
    (ent,) = derive_entities(shared_data / "structures" / "1GDR.pdb.gz", "1GDR")
    assert ent.name == "GAMMA DELTA RESOLVASE"  # "1GDR   3" of columns 73-80 is not part of the name
