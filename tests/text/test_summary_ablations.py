"""Text-shortcut ablation writers (summarize.writer: no_ids | name_only | length_only) on real entries parsed by
prepare's own worker, on synthetic rows, and with missing fields recorded like the template's."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from protalign.corpus.prepare import process_entry
from protalign.text import summarize as S

ABLATIONS = ("no_ids", "name_only", "length_only")
# one single-entity homodimer, one two-entity complex (Fab), one mmCIF without names or organisms, a monomer
REAL = ("11AS", "1A0Q", "1EF0", "107L")


@pytest.fixture(scope="module")
def real_rows(shared_data) -> pd.DataFrame:
    import csv

    manifest = {r["pdb_id"]: r for r in csv.DictReader(open(shared_data / "manifest.tsv"), delimiter="\t")}
    cfg = SimpleNamespace(max_file_mb=100, min_residues=10, max_residues=10000)
    rows = []
    for pid in REAL:
        m = manifest[pid]
        task = {
            "id": pid,
            "structure_file": m["structure_file"],
            "format": m["format"],
            "fasta_file": m["fasta_file"],
        }
        status, row, _ = process_entry((task, str(shared_data), cfg))
        assert status == "ok", row
        rows.append(row)
    return pd.DataFrame(rows)


def synthetic() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": ["2XYZ", "3NOP", "4QRS"],
            "length": [300, np.nan, 120],
            "n_chains": [2, np.nan, 1],
            "chains": ["A,B", "", "A"],
            "molecule_names": [["KINASE", "INHIBITOR"], [], ["LYSOZYME C"]],
            "organisms": [["Homo sapiens", ""], None, ["Gallus gallus"]],
            "taxids": [["9606", ""], [], ["9031"]],
            "entity_chains": [["A", "B"], [], ["A"]],
            "entity_lengths": [[280, 20], [], [129]],
        }
    )


def _texts(rows: pd.DataFrame, writer: str) -> dict[str, str]:
    out, _ = S.summarize(rows, S.get_writer(writer))
    assert set(out["writer"]) == {writer}
    return dict(zip(out["id"], out["text"], strict=True))


def test_every_ablation_writes_one_text_per_real_entry(real_rows):
    for writer in ABLATIONS:
        texts = _texts(real_rows, writer)
        assert sorted(texts) == sorted(REAL)
        assert all(t and "  " not in t and ": ." not in t for t in texts.values())


def test_name_only_and_length_only_exact_on_real_entries(real_rows):
    name, length = _texts(real_rows, "name_only"), _texts(real_rows, "length_only")
    assert name["11AS"] == "The protein is named ASPARAGINE SYNTHETASE."
    assert name["1A0Q"] == "The protein is named 29G11 FAB (LIGHT CHAIN); 29G11 FAB (HEAVY CHAIN)."
    assert name["1EF0"] == "The protein's name is not recorded."
    assert length["11AS"] == "The protein has 330 amino acids in 2 chain(s)."
    assert length["1A0Q"] == "The protein has 429 amino acids in 2 chain(s)."
    assert length["107L"] == "The protein has 164 amino acids in 1 chain(s)."
    assert length["1EF0"] == "The protein has 819 amino acids in 2 chain(s)."  # no FASTA: prepared n_chains


def test_no_ids_is_the_template_less_id_and_names(real_rows):
    texts, template = _texts(real_rows, "no_ids"), _texts(real_rows, "template")
    assert texts["11AS"] == (
        "The protein structure has a sequence length of: 330 amino acids. Here is more information: "
        "The protein structure involves the following chains: Chains A, B. "
        "It was derived from the organism Escherichia coli K12 (83333)."
    )
    assert texts["1A0Q"] == (
        "The protein structure has a sequence length of: 429 amino acids. Here is more information: "
        "The protein structure has 2 protein entities: entity 1 (Chain L; Mus musculus (10090)), "
        "entity 2 (Chain H; Mus musculus (10090))."
    )
    for pid in REAL:  # what stays is the template's length, chains and organism
        assert template[pid].replace(f" {pid}", "").startswith(texts[pid].split(" Here is")[0])


def test_no_ids_leaks_neither_id_nor_any_name(real_rows):
    rows = pd.concat([real_rows, synthetic()], ignore_index=True)
    texts = _texts(rows, "no_ids")
    for _, row in rows.iterrows():
        text = texts[row["id"]].lower()
        assert row["id"].lower() not in text
        names = S.clean_list(row["molecule_names"])
        assert all(n.lower() not in text for n in names), (names, text)
        for org in S.clean_list(row["organisms"]):
            assert org.lower() in text  # organism kept


def test_missing_fields_recorded_like_the_template():
    rows = synthetic()
    out, missing = S.summarize(rows, S.get_writer("length_only"))
    text = dict(zip(out["id"], out["text"], strict=True))
    assert (
        text["3NOP"] == "The protein has an unknown number of amino acids in an unknown number of chain(s)."
    )
    assert text["2XYZ"] == "The protein has 300 amino acids in 2 chain(s)."
    assert missing["length"] == 1 and missing["n_chains"] == 1
    out, missing = S.summarize(rows, S.get_writer("name_only"))
    assert dict(zip(out["id"], out["text"], strict=True))["3NOP"] == "The protein's name is not recorded."
    assert missing["molecule_names"] == 1 and missing["length"] == 0
    out, missing = S.summarize(rows, S.get_writer("no_ids"))
    assert dict(zip(out["id"], out["text"], strict=True))["3NOP"] == (
        "The protein structure has an unknown sequence length. Here is more information: "
        "The protein structure involves the following chains: unknown. Its source organism is not recorded."
    )
    assert missing["organisms"] == 1 and missing["length"] == 1 and missing["molecule_names"] == 0


def test_unknown_writer_lists_the_ablations():
    with pytest.raises(ValueError, match="length_only") as err:
        S.get_writer("names")
    assert all(w in str(err.value) for w in ABLATIONS)
