"""`evaluate` stage on synthetic EmbeddingSets written to a tmp Paths: files, keys, shared ids, determinism."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from synthetic import make_world

from protalign.align import evaluate, train


def test_writes_metrics_and_per_protein(world):
    train.train_pair(world.params, world.paths, "llm-a", "gdm-x")
    m = evaluate.run(world.params, world.paths, "llm-a", "gdm-x")
    on_disk = json.loads(world.paths.metrics("llm-a", "gdm-x").read_text())
    assert on_disk == json.loads(json.dumps(m))
    for key in ("alignment_score", "baseline_alignment_score", "matched_cosine_mean", "mrr_s2t", "mrr_t2s"):
        assert isinstance(on_disk[key], float)
    for k in (1, 5, 10):
        assert 0.0 <= on_disk[f"recall@{k}_s2t"] <= on_disk.get(f"recall@{k + 1}_s2t", 1.0) <= 1.0
        assert f"recall@{k}_t2s" in on_disk and f"baseline_recall@{k}_t2s" in on_disk
    assert (on_disk["n_test"], on_disk["n_train"], on_disk["n_val"], on_disk["n_missing"]) == (32, 96, 32, 0)
    assert on_disk["ties"] == "pessimistic"
    table = pd.read_csv(world.paths.per_protein("llm-a", "gdm-x"))
    assert list(table.columns) == ["id", "matched_cosine", "rank_s2t", "rank_t2s", "rr"]
    assert table["id"].tolist() == world.split["test"]
    assert table["matched_cosine"].mean() == pytest.approx(on_disk["matched_cosine_mean"], abs=1e-7)
    assert (table["rank_s2t"] == 1).mean() == pytest.approx(on_disk["recall@1_s2t"])
    assert (1 / table["rank_t2s"]).mean() == pytest.approx(on_disk["mrr_t2s"], abs=1e-9)
    assert table["rank_s2t"].between(1, 32).all()


def test_baseline_is_the_untrained_start(tmp_path):
    """With zero epochs of learning (lr=0) the trained heads ARE the baseline: identical numbers."""
    world = make_world(tmp_path, align={"lr": 0.0, "epochs": 1})
    train.train_pair(world.params, world.paths, "llm-a", "gdm-x")
    m = evaluate.run(world.params, world.paths, "llm-a", "gdm-x")
    assert m["alignment_score"] == m["baseline_alignment_score"]
    assert m["mrr_s2t"] == m["baseline_mrr_s2t"]


def test_same_seed_gives_identical_metrics_bytes(tmp_path):
    blobs = []
    for name in ("first", "second"):
        world = make_world(tmp_path / name, align={"epochs": 8})
        train.train_pair(world.params, world.paths, "llm-a", "gdm-x")
        evaluate.run(world.params, world.paths, "llm-a", "gdm-x")
        blobs.append(
            (
                world.paths.metrics("llm-a", "gdm-x").read_bytes(),
                world.paths.per_protein("llm-a", "gdm-x").read_bytes(),
            )
        )
    assert blobs[0] == blobs[1]


def test_each_pair_scores_the_split_test_set_and_reports_its_losses(tmp_path, capsys):
    probe = make_world(tmp_path / "probe")
    test_ids = probe.split["test"]
    # llm-b could not embed three test proteins, gdm-y one more: only the pairs using them lose those
    drop = {"text/llm-b": test_ids[:3], "structure/gdm-y": test_ids[2:4]}
    world = make_world(tmp_path / "w", llms=("llm-a", "llm-b"), gdms=("gdm-x", "gdm-y"), drop=drop,
                       align={"epochs": 2})  # fmt: skip
    results = {}
    for llm in ("llm-a", "llm-b"):
        for gdm in ("gdm-x", "gdm-y"):
            train.train_pair(world.params, world.paths, llm, gdm)
            results[(llm, gdm)] = evaluate.run(world.params, world.paths, llm, gdm)
    expect = {("llm-a", "gdm-x"): [], ("llm-a", "gdm-y"): test_ids[2:4], ("llm-b", "gdm-x"): test_ids[:3],
              ("llm-b", "gdm-y"): test_ids[:4]}  # fmt: skip
    for (llm, gdm), lost in expect.items():
        m = results[(llm, gdm)]
        kept = [i for i in test_ids if i not in lost]
        assert pd.read_csv(world.paths.per_protein(llm, gdm))["id"].tolist() == kept
        assert (m["n_test_split"], m["n_test"], m["n_test_lost"]) == (32, 32 - len(lost), len(lost))
        assert sorted(m["test_lost"]) == sorted(lost)
        assert json.loads(world.paths.metrics(llm, gdm).read_text())["test_lost"] == m["test_lost"]
    both = results[("llm-b", "gdm-y")]["test_lost"]
    assert both[test_ids[2]] == "text/llm-b: synthetic drop; structure/gdm-y: synthetic drop"
    assert both[test_ids[0]] == "text/llm-b: synthetic drop" and both[test_ids[3]] == "structure/gdm-y: synthetic drop"
    out = capsys.readouterr().out
    assert "evaluate llm-b__gdm-x: alignment score" in out and f"lost 3 of 32 test proteins: {test_ids[0]}" in out
    assert "evaluate llm-a__gdm-x" in out and "lost 0 of 32 test proteins" in out


def test_one_pair_needs_only_its_own_two_models(tmp_path):
    """Other models' embeddings absent (or embedding fewer proteins) change nothing for this pair."""
    alone = make_world(tmp_path / "alone", align={"epochs": 2})
    crowd = make_world(tmp_path / "crowd", llms=("llm-a", "llm-b"), gdms=("gdm-x", "gdm-y"),
                       drop={"text/llm-b": alone.split["test"][:5]}, align={"epochs": 2})  # fmt: skip
    shutil.rmtree(crowd.paths.structure_embeddings("gdm-y"))
    for world in (alone, crowd):
        train.train_pair(world.params, world.paths, "llm-a", "gdm-x")
        evaluate.run(world.params, world.paths, "llm-a", "gdm-x")
    assert alone.paths.metrics("llm-a", "gdm-x").read_bytes() == crowd.paths.metrics("llm-a", "gdm-x").read_bytes()
    assert json.loads(crowd.paths.metrics("llm-a", "gdm-x").read_text())["n_test"] == 32


def test_unlisted_absence_has_a_reason_too(world):
    text = evaluate.load_pair(world.paths, "llm-a", "gdm-x").text
    struct = evaluate.load_pair(world.paths, "llm-a", "gdm-x").structure
    lost = evaluate.lost_with_reasons(["P0000", "NOPE"], text, struct, "llm-a", "gdm-x")
    assert lost == {"NOPE": "text/llm-a: absent (not listed as skipped); structure/gdm-x: absent (not listed as skipped)"}


def test_clear_errors(world, tmp_path):
    with pytest.raises(FileNotFoundError, match="align stage"):
        evaluate.run(world.params, world.paths, "llm-a", "gdm-x")
    train.train_pair(world.params, world.paths, "llm-a", "gdm-x")
    # the structure embeddings changed width after training: refuse to score stale heads
    other = make_world(tmp_path / "other", d_structure=5)
    for f in other.paths.structure_embeddings("gdm-x").iterdir():
        (world.paths.structure_embeddings("gdm-x") / f.name).write_bytes(f.read_bytes())
    with pytest.raises(ValueError, match="do not match the trained heads"):
        evaluate.run(world.params, world.paths, "llm-a", "gdm-x")


def test_chance_levels():
    out = evaluate.chance_levels(4, (1, 10))
    assert out["chance_recall@1"] == 0.25 and out["chance_recall@10"] == 1.0
    assert out["chance_mrr"] == pytest.approx((1 + 1 / 2 + 1 / 3 + 1 / 4) / 4)
    assert np.isfinite(out["chance_mrr"])


def test_one_pairs_dag_holds_only_its_own_models():
    """`dvc repro evaluate@<pair>` runs only that pair's upstream: no other LLM, GDM or fine-tune."""
    root = Path(__file__).resolve().parents[2]
    stages = yaml.safe_load((root / "dvc.yaml").read_text())["stages"]
    for name in ("evaluate", "crossval", "head_depth"):
        embeddings = [d for d in stages[name]["deps"] if str(d).startswith("embeddings/")]
        assert embeddings == ["embeddings/text/${item.llm}", "embeddings/structure/${item.gdm}"], name
        assert not {"align.llms", "structure.gdms"} & set(stages[name]["params"]), name
    res = subprocess.run(["dvc", "dag", "--md", "evaluate@smollm2-135m-gat"], cwd=root, capture_output=True,
                         text=True, check=True)  # fmt: skip
    nodes = set(re.findall(r'node\d+\["([^"]+)"\]', res.stdout))
    assert nodes == {"data.dvc", "prepare", "cluster", "split", "summarize", "embed_text@smollm2-135m",
                     "train_structure@gat", "embed_structure@gat", "align@smollm2-135m-gat",
                     "evaluate@smollm2-135m-gat"}  # fmt: skip
