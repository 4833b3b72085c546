"""The text-shortcut and sequence-blind ablations run through `dvc repro`: on a copy of the session's pipeline
repository, `dvc exp run -S summarize.writer=no_ids -S structure.residue_types=false` for ONE pair's evaluate
reruns only that pair's upstream; its summaries carry neither id nor name, its GDM trained without the
residue-type task and saw no types. The other two writers run through the summarize stage."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
import torch

pytestmark = pytest.mark.pipeline

LLM, GDM = "smollm2-135m", "gat"
TARGET = f"evaluate@{LLM}-{GDM}"


@pytest.fixture(scope="module")
def ablated(pipeline_run, tmp_path_factory):
    root = tmp_path_factory.mktemp("ablate") / "repo"
    shutil.copytree(pipeline_run.root, root, symlinks=True)
    run = type(pipeline_run)(root=root, env=pipeline_run.env, repro_log="", ids=pipeline_run.ids)
    run.run("git", "add", "-A")
    run.run("git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "default run")
    run.before = pd.read_parquet(root / "prepared" / "summaries.parquet")
    run.metrics_before = json.loads((root / "metrics" / f"{LLM}__{GDM}.json").read_text())
    sets = ["summarize.writer=no_ids", "structure.residue_types=false"]
    res = run.run(
        "dvc", "exp", "run", "-n", "ablated", *[a for s in sets for a in ("-S", s)], TARGET, check=False
    )
    run.log = res.stdout + res.stderr
    assert res.returncode == 0, run.log[-4000:]
    return run


def test_only_the_pairs_upstream_reruns(ablated):
    stages = {line.split("'")[1] for line in ablated.log.splitlines() if line.startswith("Running stage '")}
    assert stages == {"summarize", f"embed_text@{LLM}", f"train_structure@{GDM}", f"embed_structure@{GDM}",
                      f"align@{LLM}-{GDM}", TARGET}, stages  # fmt: skip


def test_summaries_changed_and_hide_ids_and_names(ablated):
    after = pd.read_parquet(ablated.root / "prepared" / "summaries.parquet")
    proteins = pd.read_parquet(ablated.root / "prepared" / "proteins.parquet")
    assert after["id"].tolist() == ablated.before["id"].tolist()
    assert set(after["writer"]) == {"no_ids"} and set(ablated.before["writer"]) == {"template"}
    assert (after["text"] != ablated.before["text"]).all()
    names = {r.id: [str(n) for n in r.molecule_names if str(n)] for r in proteins.itertuples()}
    for pid, text in zip(after["id"], after["text"], strict=True):
        assert pid not in text and not any(n in text for n in names[pid]), text


def test_gdm_trained_and_embedded_sequence_blind(ablated):
    payload = torch.load(ablated.root / "models" / "structure" / f"{GDM}.pt", weights_only=True)
    assert payload["config"]["residue_types"] is False
    assert "residue_type" not in payload["summary"]["tasks"] and payload["summary"]["tasks"]
    meta = json.loads((ablated.root / "embeddings" / "structure" / GDM / "meta.json").read_text())
    assert meta["config"]["residue_types"] is False
    metrics = json.loads((ablated.root / "metrics" / f"{LLM}__{GDM}.json").read_text())
    assert metrics["n_test"] == ablated.metrics_before["n_test"]
    assert metrics["alignment_score"] != ablated.metrics_before["alignment_score"]


@pytest.mark.parametrize("writer", ["name_only", "length_only"])
def test_other_writers_run_in_the_summarize_stage(ablated, writer):
    res = ablated.run(
        "dvc", "exp", "run", "-n", writer, "-S", f"summarize.writer={writer}", "summarize", check=False
    )
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
    after = pd.read_parquet(ablated.root / "prepared" / "summaries.parquet")
    assert set(after["writer"]) == {writer}
    start = {"name_only": "The protein is named ", "length_only": "The protein has "}[writer]
    assert all(t.startswith(start) or t == "The protein's name is not recorded." for t in after["text"])
