"""summarize: the study's template sentence, missing fields made explicit, registry errors, atomic sorted output."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from params_helpers import default_params
from protalign.paths import Paths
from protalign.text import summarize as S


def proteins() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": ["2XYZ", "11AS", "3NOP"],
            "length": [300, 656, np.nan],
            "n_chains": [2, 2, 3],
            "chains": ["A,B", "A,B", "A,B,C"],
            "molecule_names": [["KINASE", "INHIBITOR"], ["ASPARAGINE SYNTHETASE"], []],
            "organisms": [np.array(["Homo sapiens", ""], dtype=object), ["Escherichia coli K12"], None],
            "taxids": [["9606", ""], ["83333"], []],
            "entity_chains": [["A", "B"], ["A, B"], []],
            "entity_lengths": [[280, 20], [330], []],
        }
    )


def test_template_matches_the_study_sentence():
    row = proteins().iloc[1]
    assert S.template_text(row) == (
        "The protein structure 11AS has a sequence length of: 330 amino acids. Here is more information: "
        "The protein structure 11AS involves the following chains: Chains A, B. "
        "The protein is named ASPARAGINE SYNTHETASE. It was derived from the organism Escherichia coli K12 (83333)."
    )


def test_multi_entity_entries_list_every_entity():
    text = S.template_text(proteins().iloc[0])
    assert text.startswith("The protein structure 2XYZ has a sequence length of: 300 amino acids. ")
    assert "has 2 protein entities: KINASE (Chain A; Homo sapiens (9606)), INHIBITOR (Chain B)." in text


def test_missing_fields_are_explicit_and_counted():
    out, missing = S.summarize(proteins(), S.get_writer("template"))
    assert out["id"].tolist() == ["11AS", "2XYZ", "3NOP"]  # sorted by id
    text = dict(zip(out["id"], out["text"], strict=True))
    assert text["3NOP"] == (
        "The protein structure 3NOP has an unknown sequence length. Here is more information: "
        "The protein structure 3NOP involves the following chains: unknown. The protein's name is not recorded. "
        "Its source organism is not recorded."
    )
    assert all("  " not in t and ": ." not in t for t in out["text"])
    assert missing["length"] == 1 and missing["molecule_names"] == 1 and missing["organisms"] == 1
    assert missing["n_chains"] == 1
    assert set(out["writer"]) == {"template"}


def test_length_falls_back_to_observed_residues_when_fasta_lacks_it():
    row = dict(proteins().iloc[1], entity_lengths=[0])
    assert "sequence length of: 656 amino acids" in S.template_text(row)


def test_run_writes_sorted_parquet(tmp_path):
    paths = Paths(tmp_path)
    paths.prepared.mkdir()
    proteins().to_parquet(paths.proteins, index=False)
    S.run(default_params(), paths)
    back = pd.read_parquet(paths.summaries)
    assert list(back.columns) == ["id", "text", "writer"]
    assert back["id"].tolist() == sorted(back["id"])
    assert back["text"].str.startswith("The protein structure ").all()
    assert sorted(p.name for p in paths.prepared.iterdir()) == [
        "proteins.parquet",
        "summaries.parquet",
    ]  # no temp left


def test_unknown_writer_and_bad_input_fail_clearly(tmp_path):
    with pytest.raises(ValueError, match="unknown writer 'chatty'.*template"):
        S.run(default_params(summarize={"writer": "chatty"}), Paths(tmp_path))
    with pytest.raises(ValueError, match="organisms"):
        S.summarize(proteins().drop(columns=["organisms"]), S.TemplateWriter())
    dup = pd.concat([proteins(), proteins().iloc[:1]])
    with pytest.raises(ValueError, match="duplicate ids.*2XYZ"):
        S.summarize(dup, S.TemplateWriter())
    with pytest.raises(FileNotFoundError, match="prepare"):
        S.run(default_params(), Paths(tmp_path))


def test_clean_list_handles_cell_shapes():
    assert S.clean_list(None) == []
    assert S.clean_list(float("nan")) == []
    assert S.clean_list("  A   B ") == ["A B"]
    assert S.clean_list(np.array(["X", None, "nan", "X", "Y"], dtype=object)) == ["X", "Y"]
