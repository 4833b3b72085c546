"""RCSB-style FASTA parsing/formatting and deriving entity records from real structure headers."""

from __future__ import annotations

import gzip

import pytest

from protalign.corpus.fasta import FastaEntity, derive_entities, format_fasta, parse_fasta, parse_header


@pytest.mark.parametrize(
    "line, chains, name, organism, taxid",
    [
        (
            ">1ABC_1|Chains A, B|HEMOGLOBIN ALPHA|Homo sapiens (9606)",
            ["A", "B"],
            "HEMOGLOBIN ALPHA",
            "Homo sapiens",
            "9606",
        ),
        (">1ABC_2|Chain C|Lysozyme C|Gallus gallus (9031)", ["C"], "Lysozyme C", "Gallus gallus", "9031"),
        (
            ">7XYZ_3|Chains A[auth B], C[auth D]|Spike|SARS-CoV-2 (2697049)",
            ["B", "D"],
            "Spike",
            "SARS-CoV-2",
            "2697049",
        ),
        (">154L_1|Chain A|GOOSE LYSOZYME|", ["A"], "GOOSE LYSOZYME", "", ""),
        (">154L_1|Chain A|GOOSE LYSOZYME", ["A"], "GOOSE LYSOZYME", "", ""),
        (">1ABC_1|Chain A|X|Homo sapiens", ["A"], "X", "Homo sapiens", ""),
        (
            ">3SN6_4|Chain R|LYSOZYME|Enterobacteria phage T4, Homo sapiens (10665,9606)",
            ["R"],
            "LYSOZYME",
            "Enterobacteria phage T4, Homo sapiens",
            "10665,9606",
        ),
    ],
)
def test_header_cases(line, chains, name, organism, taxid):
    e = parse_header(line)
    assert (e.chains, e.name, e.organism, e.taxid) == (chains, name, organism, taxid)
    assert e.entry_id == line[1:5]


@pytest.mark.parametrize(
    "line", ["1ABC_1|Chain A|x|y", ">1ABC|Chain A|x|y", ">1ABC_1|Protein A|x|y", ">1ABC_1"]
)
def test_bad_headers_are_errors(line):
    with pytest.raises(ValueError):
        parse_header(line)


def test_parse_format_roundtrip():
    ents = [
        FastaEntity("1ABC", "1", ["A", "B"], "NAME ONE", "Homo sapiens", "9606", "M" * 170),
        FastaEntity("1ABC", "2", ["C"], "peptide", "", "", "ACDE"),
    ]
    text = format_fasta(ents)
    assert text.splitlines()[0] == ">1ABC_1|Chains A, B|NAME ONE|Homo sapiens (9606)"
    assert ">1ABC_2|Chain C|peptide|\nACDE\n" in text
    assert parse_fasta(text) == ents
    with pytest.raises(ValueError):
        parse_fasta("ACDEF\n>1ABC_1|Chain A|x|")


@pytest.mark.parametrize("entry", ["11AS", "1A8O", "154L", "7CTH", "1FKI", "2RH1"])
def test_derive_matches_shared_fasta(shared_data, entry):
    """Names and sequences derived here agree with the corpus FASTA (MSE->M, mmCIF tables, no organism)."""
    structure = next((shared_data / "structures").glob(f"{entry}.*"))
    got = derive_entities(structure, entry)
    ref = parse_fasta((shared_data / "fasta" / f"{entry}.fasta").read_text())
    assert [(e.entity_id, e.chains, e.name, e.sequence) for e in got] == [
        (e.entity_id, e.chains, e.name, e.sequence) for e in ref
    ]
    assert [e.organism.lower() for e in got] == [e.organism.lower() for e in ref]
    assert [e.taxid.split(",")[0] for e in got] == [e.taxid for e in ref]


def test_derive_entry_id_from_header(shared_data, tmp_path):
    src = shared_data / "structures" / "11AS.pdb.gz"
    plain = tmp_path / "whatever.pdb"
    plain.write_bytes(gzip.decompress(src.read_bytes()))
    assert {e.entry_id for e in derive_entities(plain)} == {"11AS"}


@pytest.mark.parametrize("content", [b"", b"hello, not a structure\n", b"\x1f\x8b\x08\x00truncated"])
def test_derive_unreadable_is_value_error(tmp_path, content):
    p = tmp_path / "bad.pdb"
    p.write_bytes(content)
    with pytest.raises(ValueError):
        derive_entities(p)
