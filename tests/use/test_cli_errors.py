"""Bad input through the CLI on a synthetic run or an empty folder: exit 2, a clear message, nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest

from protalign.cli import main

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def in_synthetic_run(run_paths, monkeypatch):
    (run_paths.root / "params.yaml").write_text((REPO / "params.yaml").read_text())
    monkeypatch.chdir(run_paths.root)
    return run_paths


def test_missing_heads_says_run_the_pipeline(tmp_path, monkeypatch, capsys):
    (tmp_path / "params.yaml").write_text((REPO / "params.yaml").read_text())
    monkeypatch.chdir(tmp_path)
    assert main(["search", "lysozyme", "--json", "r.json"]) == 2
    assert "dvc repro" in capsys.readouterr().err and not (tmp_path / "r.json").exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["search", "lysozyme", "--pair", "llm-z__gdm-x"], "unknown pair"),
        (["search", "lysozyme", "--pair", "lysozyme"], "unknown pair"),
        (["search", ""], "empty query"),
        (["search", "lysozyme", "--top", "0"], "--top"),
        (["describe", "missing.pdb"], "no such structure file"),
        (["embed", "missing_folder", "--out", "o"], "no such file or folder"),
    ],
)
def test_bad_input(in_synthetic_run, capsys, argv, message):
    json_args = ["--json", "r.json"] if argv[0] != "embed" else []
    assert main([*argv, *json_args]) == 2
    assert message in capsys.readouterr().err
    assert not Path("r.json").exists() and not Path("o").exists()


def test_unparsable_structure(in_synthetic_run, capsys):
    Path("bad.pdb").write_text("HEADER    NOT A STRUCTURE\nEND\n")
    assert main(["embed", "bad.pdb", "--out", "o", "--pair", "llm-a__gdm-x"]) == 2
    err = capsys.readouterr().err
    assert "bad.pdb" in err and "could not be used" in err and not Path("o").exists()
