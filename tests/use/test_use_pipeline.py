"""embed / search / describe on the end-to-end scratch run (real structures, the run's GAT, SmolLM2 and heads)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from protalign.cli import main
from protalign.params import load_params
from protalign.paths import Paths
from protalign.storage import load_embeddings
from protalign.use import describe
from protalign.use.models import load_pair_heads
from protalign.use.pairs import resolve_pair
from protalign.use.search import Searcher

pytestmark = pytest.mark.pipeline


def _default(root):
    """The pair the commands pick without --pair (best alignment_score of the run; checked in test_pairs_index)."""
    return resolve_pair(Paths(root))


@pytest.fixture
def in_run(pipeline_run, monkeypatch):
    """cwd = the scratch run, its session cache (converted LLM) reused."""
    monkeypatch.chdir(pipeline_run.root)
    monkeypatch.setenv("PROTALIGN_CACHE", pipeline_run.env["PROTALIGN_CACHE"])
    return pipeline_run


def _metrics(root, pair):
    return json.loads((root / "metrics" / f"{pair.id}.json").read_text())


def test_embed_matches_the_pipeline_embeddings(pipeline_run, tmp_path):
    out = tmp_path / "mine"
    res = pipeline_run.run(
        "protalign", "embed", "data/structures", "--out", str(out), "--skip-bad", check=False
    )
    assert res.returncode == 0, res.stderr
    pair = _default(pipeline_run.root)
    assert f"pair:  {pair.id}" in res.stdout and "text->structure" in res.stdout and "9BAD" in res.stdout
    ref = load_embeddings(pipeline_run.root / "embeddings" / "structure" / pair.gdm)  # the default pair's GDM
    mine = load_embeddings(out / "structure")
    assert sorted(mine.ids) == sorted(ref.ids)  # the same usable proteins as prepare + embed_structure
    np.testing.assert_allclose(mine.subset(ref.ids), ref.vectors, rtol=1e-4, atol=1e-5)
    aligned = load_embeddings(out / "aligned")
    heads = load_pair_heads(pair)
    np.testing.assert_allclose(aligned.subset(ref.ids), heads.project_structure(ref.vectors), atol=1e-5)
    assert [s["id"] for s in aligned.meta["skipped"]] == ["9BAD"] and aligned.meta["pair"] == pair.id
    mine_rows = pd.read_parquet(out / "proteins.parquet").set_index("id")
    run_rows = pd.read_parquet(pipeline_run.root / "prepared" / "proteins.parquet").set_index("id")
    for column in ("molecule_names", "organisms", "length"):  # the run's own FASTA names (data/fasta/)
        assert [np.asarray(mine_rows.at[i, column]).tolist() for i in ref.ids] == [
            np.asarray(run_rows.at[i, column]).tolist() for i in ref.ids
        ], column


def test_search_own_description_recall_matches_the_metrics(in_run):
    root = in_run.root
    params, paths = load_params(root / "params.yaml"), Paths(root)
    searcher = Searcher(params, paths, split="test")
    pair = searcher.pair
    texts = pd.read_parquet(paths.summaries).set_index("id")["text"]
    per_protein = pd.read_csv(paths.per_protein(pair.llm, pair.gdm)).set_index("id")
    ranks = {}
    for pid in per_protein.index:
        hits = searcher.search(texts[pid], top=1000)["results"]
        ranks[pid] = next(h["rank"] for h in hits if h["id"] == pid)
        assert len(hits) == len(per_protein)
    m = _metrics(root, pair)
    assert abs(np.mean([r <= 10 for r in ranks.values()]) - m["recall@10_t2s"]) <= 0.1
    assert abs(np.mean([r <= 1 for r in ranks.values()]) - m["recall@1_t2s"]) <= 0.1
    assert ranks == per_protein["rank_t2s"].to_dict()  # the evaluate stage's own ranks, protein by protein


def test_describe_ranks_like_the_evaluate_stage(in_run):
    root = in_run.root
    params, paths = load_params(root / "params.yaml"), Paths(root)
    pair = _default(root)
    per_protein = pd.read_csv(paths.per_protein(pair.llm, pair.gdm)).set_index("id")
    files = pd.read_parquet(paths.proteins).set_index("id")["structure_file"]
    for pid in per_protein.index:
        _, result = describe.run(params, paths, paths.data / files[pid], top=1000, split="test")
        rank = next(h["rank"] for h in result["results"] if h["id"] == pid)
        assert rank == per_protein.at[pid, "rank_s2t"], pid
        assert result["results"][0]["description"].startswith("The protein structure")


def test_search_cli_prints_provenance_and_writes_json(in_run, tmp_path, capsys):
    out = tmp_path / "hits.json"
    assert main(["search", "The protein is named lysozyme.", "--top", "3", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    pair = _default(in_run.root)
    assert f"pair:  {pair.id}" in printed and "best headline_gain" in printed and "R@10" in printed
    result = json.loads(out.read_text())
    assert result["pair"] == pair.id and result["test_metrics"] == _metrics(in_run.root, pair)
    assert len(result["results"]) == 3 and result["n_candidates"] == len(
        (in_run.root / "embeddings" / "structure" / pair.gdm / "ids.txt").read_text().split()
    )
    assert [r["score"] for r in result["results"]] == sorted(
        (r["score"] for r in result["results"]), reverse=True
    )


def test_search_an_embed_output(in_run, tmp_path, capsys):
    some = sorted((in_run.root / "data" / "structures").glob("1*"))[:3]
    assert main(["embed", *map(str, some), "--out", str(tmp_path / "idx")]) == 0
    assert main(["search", "The protein is named lysozyme.", "--index", str(tmp_path / "idx")]) == 0
    printed = capsys.readouterr().out
    assert "embed output" in printed and "(3 proteins)" in printed


def test_every_trained_pair_can_be_named(in_run, capsys):
    pairs = sorted(p.stem for p in (in_run.root / "models" / "heads").glob("*.pt"))
    others = [p for p in pairs if p != _default(in_run.root).id]
    if not others:
        pytest.skip(f"the scratch run trained one pair only ({pairs})")
    for pair in others:  # e.g. the LoRA-fine-tuned LLM's pair: its query goes through base + adapter
        assert main(["search", "The protein is named lysozyme.", "--pair", pair, "--top", "2"]) == 0
        printed = capsys.readouterr().out
        assert f"pair:  {pair}  (named with --pair)" in printed and "rank" in printed


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["search", "lysozyme", "--pair", "nope__gat"], "unknown pair"),
        (["search", "   "], "empty query"),
        (["describe", "data/structures/9BAD.pdb"], "could not be used"),
        (["describe", "no/such/file.pdb"], "no such structure file"),
        (["embed", "data/structures", "--out", "OUT"], "9BAD"),
    ],
)
def test_bad_input_fails_cleanly_and_writes_nothing(in_run, tmp_path, capsys, argv, message):
    argv = [a if a != "OUT" else str(tmp_path / "out") for a in argv]
    assert main([*argv, *(["--json", str(tmp_path / "r.json")] if argv[0] != "embed" else [])]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "r.json").exists() and not (tmp_path / "out").exists()
