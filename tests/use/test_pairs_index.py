"""Pair choice, honest provenance, the cached aligned index and its ranking, on a synthetic run (no models)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from use_world import make_run

from protalign.align.heads import load_heads
from protalign.storage import load_embeddings
from protalign.use.index import AlignedIndex, cache_dir, corpus_index
from protalign.use.pairs import UseError, default_pair, resolve_pair


def test_default_pair_is_best_alignment_score(run_paths):
    pair, why = default_pair(run_paths)
    assert pair == "llm-b__gdm-x" and "0.3000" in why
    chosen = resolve_pair(run_paths)
    assert chosen.id == "llm-b__gdm-x" and chosen.metrics["alignment_score"] == 0.30
    text = "\n".join(chosen.trust_lines())
    assert "models/heads/llm-b__gdm-x.pt" in text and "R@10 0.50" in text and "n_test=6" in text


def test_default_pair_never_picks_a_reference_encoder(tmp_path, monkeypatch):
    monkeypatch.setenv("PROTALIGN_CACHE", str(tmp_path / "cache"))
    paths = make_run(tmp_path / "repo", {("llm-a", "composition"): 0.9, ("llm-a", "gdm-x"): 0.1})
    pair, _ = default_pair(paths)
    assert pair == "llm-a__gdm-x"  # the composition floor scored higher, but it is a reference
    assert resolve_pair(paths, "llm-a__composition").gdm == "composition"  # still usable by name
    floor_only = make_run(tmp_path / "floor", {("llm-a", "composition"): 0.9})
    with pytest.raises(UseError, match="reference"):
        default_pair(floor_only)


def test_any_trained_pair_can_be_named_even_without_metrics(run_paths):
    assert resolve_pair(run_paths, "llm-a__gdm-x").id == "llm-a__gdm-x"
    assert resolve_pair(run_paths, "llm-a-gdm-x").id == "llm-a__gdm-x"  # DVC matrix spelling
    no_metrics = resolve_pair(run_paths, "llm-a__gdm-y")
    assert no_metrics.metrics is None and "trust unknown" in "\n".join(no_metrics.trust_lines())


@pytest.mark.parametrize("name", ["nope__gat", "llm-a", "", "llm-c-gdm-x"])
def test_unknown_pair_is_a_clear_error(run_paths, name):
    with pytest.raises(UseError, match="pair"):
        resolve_pair(run_paths, name)


def test_missing_heads_says_run_the_pipeline(tmp_path):
    from protalign.paths import Paths

    with pytest.raises(UseError, match="dvc repro"):
        resolve_pair(Paths(tmp_path))


def test_index_is_the_head_projection_and_is_cached(run_paths):
    pair = resolve_pair(run_paths, "llm-a__gdm-x")
    index = corpus_index(run_paths, pair, "structure")
    _, structure_head, _, _ = load_heads(run_paths.heads("llm-a", "gdm-x"))
    raw = load_embeddings(run_paths.structure_embeddings("gdm-x"))
    with torch.no_grad():
        expected = structure_head(torch.as_tensor(raw.vectors)).numpy()
    np.testing.assert_allclose(index.vectors, expected, atol=1e-6)
    assert np.allclose(np.linalg.norm(index.vectors, axis=1), 1.0, atol=1e-5)
    assert index.labels.lookup(["P003"])["P003"] == {"molecule_name": "name P003", "organism": "Homo sapiens"}
    target = cache_dir(run_paths, pair, "structure")
    shard = target / "shards" / "vectors-00000.npy"
    assert (target / "index.json").exists() and (target / "ids.txt").exists() and shard.exists()
    stamp = shard.stat().st_mtime_ns
    again = corpus_index(run_paths, pair, "structure")
    assert shard.stat().st_mtime_ns == stamp  # read, not rebuilt
    assert isinstance(again.vectors.shards[0], np.memmap) and index.method() == "exact"
    text_index = corpus_index(run_paths, pair, "text")
    assert text_index.labels.lookup(["P003", "P004"])["P004"]["text"] == "The protein P004."


def test_retrained_heads_change_the_cache_key(run_paths, tmp_path):
    before = cache_dir(run_paths, resolve_pair(run_paths, "llm-a__gdm-x"), "structure")
    make_run(run_paths.root, {("llm-a", "gdm-x"): 0.1}, seed=1)  # new embeddings + heads
    after = cache_dir(run_paths, resolve_pair(run_paths, "llm-a__gdm-x"), "structure")
    assert before != after


def test_top_matches_brute_force_and_respects_candidates():
    rng = np.random.default_rng(0)
    vec = rng.normal(size=(500, 12)).astype(np.float32)
    vec /= np.linalg.norm(vec, axis=1, keepdims=True)
    ids = [f"X{i}" for i in range(500)]
    index = AlignedIndex(ids, vec, "test")
    q = vec[17] + 0.1 * rng.normal(size=12).astype(np.float32)
    q /= np.linalg.norm(q)
    hits = index.top(q, 7)
    order = np.argsort(-(vec @ q))[:7]
    assert [h[0] for h in hits] == [ids[i] for i in order] and hits[0][0] == "X17"
    assert [s for _, s in hits] == sorted((s for _, s in hits), reverse=True)
    sub = index.top(q, 3, candidates={"X1", "X2", "X3", "X17"})
    assert {h[0] for h in sub} <= {"X1", "X2", "X3", "X17"} and sub[0][0] == "X17"
    assert len(index.top(q, 1000)) == 500
    with pytest.raises(UseError):
        index.top(q, 0)
    with pytest.raises(UseError):
        index.top(q, 3, candidates={"nope"})


def test_embed_output_must_match_the_pair_and_its_heads(run_paths, tmp_path):
    from protalign.storage import EmbeddingSet, save_embeddings
    from protalign.use.index import embed_output_index, index_pair

    pair = resolve_pair(run_paths, "llm-a__gdm-x")
    vec = np.eye(6, dtype=np.float32)[:3]
    for name, meta in [
        ("ok", {"pair": pair.id, "heads_sha256": pair.heads_sha256}),
        ("other_pair", {"pair": "llm-b__gdm-x", "heads_sha256": pair.heads_sha256}),
        ("stale", {"pair": pair.id, "heads_sha256": "0" * 64}),
    ]:
        save_embeddings(tmp_path / name / "aligned", EmbeddingSet(["A", "B", "C"], vec, meta))
    assert index_pair(tmp_path / "ok") == pair.id
    assert [h[0] for h in embed_output_index(tmp_path / "ok", pair).top(vec[1], 1)] == ["B"]
    with pytest.raises(UseError, match="embedded for pair"):
        embed_output_index(tmp_path / "other_pair", pair)
    with pytest.raises(UseError, match="other heads"):
        embed_output_index(tmp_path / "stale", pair)
    with pytest.raises(UseError, match="not an output"):
        embed_output_index(tmp_path, pair)
