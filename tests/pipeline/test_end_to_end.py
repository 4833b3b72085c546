"""End-to-end: fetch a few real entries, `dvc repro` the whole DAG, then check every artifact and DVC's view."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from protalign.params import load_params
from protalign.structure import registry

pytestmark = pytest.mark.pipeline


def _params(run):
    return load_params(run.root / "params.yaml")


def _pairs(run) -> list[str]:
    p = _params(run)
    return [f"{llm}__{gdm}" for llm in p.align.llms for gdm in p.structure.gdms]


def test_run_covers_every_registered_gdm(pipeline_run):
    assert sorted(_params(pipeline_run).structure.gdms) == registry.available()
    assert len(_pairs(pipeline_run)) == 2 * len(registry.available())


def test_repro_writes_metrics_for_every_pair(pipeline_run):
    for pair in _pairs(pipeline_run):
        m = json.loads((pipeline_run.root / "metrics" / f"{pair}.json").read_text())
        assert -2.0 <= m["alignment_score"] <= 1.0, pair
        assert -2.0 <= m["baseline_alignment_score"] <= 1.0, pair
        assert m["n_test"] >= 2, pair
        for key in ("recall@1_s2t", "recall@10_t2s", "mrr_s2t", "mrr_t2s"):
            assert 0.0 <= m[key] <= 1.0, (pair, key)


def test_broken_file_is_reported_not_dropped(pipeline_run):
    skipped = pd.read_csv(pipeline_run.root / "prepared" / "skipped.csv")
    assert "9BAD" in set(skipped["id"]), skipped
    proteins = pd.read_parquet(pipeline_run.root / "prepared" / "proteins.parquet")
    assert "9BAD" not in set(proteins["id"])
    assert set(proteins["id"]) | set(skipped["id"]) >= set(pipeline_run.ids) | {"9BAD"}


def test_split_is_shared_and_disjoint(pipeline_run):
    split = json.loads((pipeline_run.root / "prepared" / "split.json").read_text())
    parts = [set(split[k]) for k in ("train", "val", "test")]
    assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    for pair in _pairs(pipeline_run):
        per_protein = pd.read_csv(pipeline_run.root / "reports" / "per_protein" / f"{pair}.csv")
        assert set(per_protein["id"]) <= parts[2], pair


def test_embeddings_are_arrays_with_id_index(pipeline_run):
    p = _params(pipeline_run)
    proteins = set(pd.read_parquet(pipeline_run.root / "prepared" / "proteins.parquet")["id"])
    for side, name in [("text", m) for m in p.align.llms] + [("structure", g) for g in p.structure.gdms]:
        d = pipeline_run.root / "embeddings" / side / name
        vec = np.load(d / "embeddings.npy")
        ids = (d / "ids.txt").read_text().split()
        assert vec.shape[0] == len(ids) and np.isfinite(vec).all(), name
        assert vec.ndim == 2 and vec.shape[1] > 0 and vec.std(axis=0).max() > 0, name
        if side == "structure":  # every prepared protein is embedded or recorded as skipped, with the reason
            meta = json.loads((d / "meta.json").read_text())
            skipped = {s["id"] for s in meta.get("skipped", [])}
            assert set(ids) | skipped == proteins and not set(ids) & skipped, name


def test_second_repro_is_a_noop(pipeline_run):
    res = pipeline_run.run("dvc", "repro")
    assert "up to date" in (res.stdout + res.stderr).lower(), res.stdout



PAIR_KEYS = {"gain", "gain_lo", "gain_hi", "score", "r10"}


def _leaves(tree) -> list:
    return [x for v in tree.values() for x in _leaves(v)] if isinstance(tree, dict) else [tree]


def test_readme_headline_view_is_at_most_ten_metric_columns_per_llm(pipeline_run):
    """The README's `dvc exp show` headline recipe, run on the default-shaped run: <= 10 metric columns per LLM."""
    readme = (pipeline_run.root / "README.md").read_text()
    drop = re.search(r"dvc exp show --drop '([^']+)'\s+# headline view", readme).group(1)
    header = pipeline_run.run("dvc", "exp", "show", "--csv", "--drop", drop).stdout.splitlines()[0].split(",")
    metric_cols = [c for c in header if "__" in c]
    llms = _params(pipeline_run).align.llms
    per_llm = {llm: [c for c in metric_cols if c.split("__")[0] == llm] for llm in llms}
    assert all(0 < len(cols) <= 10 for cols in per_llm.values()), per_llm
    assert len(metric_cols) == sum(map(len, per_llm.values())) == len(_pairs(pipeline_run))  # the gain, per pair


def test_exp_show_is_the_summary_only(pipeline_run):
    """`dvc exp show` of the default-shaped run: one declared metrics file, at most 5 values per pair + 3 (chance)."""
    states = json.loads(pipeline_run.run("dvc", "exp", "show", "--json").stdout)
    metrics = states[0]["data"]["metrics"]  # the workspace
    assert set(metrics) == {"reports/summary.json"}, sorted(metrics)
    shown = _leaves(metrics["reports/summary.json"]["data"])
    summary = json.loads((pipeline_run.root / "reports" / "summary.json").read_text())
    pairs = _pairs(pipeline_run)
    assert set(summary) == {*pairs, "chance"}
    for pair in pairs:
        assert set(summary[pair]) == PAIR_KEYS  # every pair's headline key is there
        test = json.loads((pipeline_run.root / "metrics" / f"{pair}.json").read_text())
        assert (
            summary[pair]["score"] == test["alignment_score"]
            and summary[pair]["r10"] == test["recall@10_t2s"]
        )
        assert None not in (summary[pair]["gain"], summary[pair]["gain_lo"], summary[pair]["gain_hi"]), pair
    assert set(summary["chance"]) == {"r10", "n_min", "n_max"}
    # DVC leaves null values out of `exp show`: the width is the summary's non-null values, <= 5 per pair + 3
    non_null = [v for v in _leaves(summary) if v is not None]
    assert len(shown) == len(non_null) == 5 * len(pairs) + 3, shown
    print(f"dvc exp show --json: {len(shown)} metric values for {len(pairs)} pairs")


def test_protalign_show_ends_the_run_with_the_answer(pipeline_run):
    res = pipeline_run.run("protalign", "show")
    assert "smollm2-135m × gat" in res.stdout and "smollm2-135m+lora × gat" in res.stdout, res.stdout
    assert "Chance:" in res.stdout and "reports/findings.html" in res.stdout


def test_training_runs_are_in_mlflow(pipeline_run):
    import sqlite3

    db = pipeline_run.root / "mlflow.db"
    assert db.exists()
    with sqlite3.connect(db) as con:
        names = {r[0] for r in con.execute("select name from runs")}
        tags = dict(con.execute("select key, value from tags where key in ('git_commit', 'data_dvc_md5')"))
    assert {f"align@{pair}" for pair in _pairs(pipeline_run)} <= names, names
    p = _params(pipeline_run)  # fixed descriptors (foldseek3di, composition) train nothing: no MLflow run
    trained = {gdm for gdm in p.structure.gdms if registry.is_trainable(gdm, p.structure)}
    assert trained and {f"train_structure@{gdm}" for gdm in trained} <= names, names
    assert len(tags.get("git_commit", "")) == 40 and tags.get("data_dvc_md5", "unknown") != "unknown"


def test_reports_written(pipeline_run):
    table = pd.read_csv(pipeline_run.root / "reports" / "alignment.csv")
    assert set(table["pair"]) == set(_pairs(pipeline_run))
    assert (pipeline_run.root / "reports" / "alignment.png").stat().st_size > 1000
