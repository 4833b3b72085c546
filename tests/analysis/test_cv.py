"""Cross-validation of the heads: reciprocal rank, the shuffled-pairing control, the headline, the archive."""

from __future__ import annotations

import gzip
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "align"))
from synthetic import make_world  # noqa: E402

from params_helpers import with_params  # noqa: E402
from protalign.align import evaluate, train  # noqa: E402
from protalign.align.heads import build_heads  # noqa: E402
from protalign.align.metrics import chance_mrr, reciprocal_ranks  # noqa: E402
from protalign.align.train import FitResult  # noqa: E402
from protalign.analysis import cv, cv_summary, stats  # noqa: E402
from protalign.corpus.split import kfold  # noqa: E402
from protalign.storage import read_json, write_json  # noqa: E402


def _brute_rr(sim: np.ndarray) -> np.ndarray:
    """Reference: rank = 1 + rivals scoring >= the true partner (ties against the model), per direction."""
    n = sim.shape[0]
    out = np.zeros(n)
    for i in range(n):
        s2t = 1 + sum(sim[i, j] >= sim[i, i] for j in range(n) if j != i)
        t2s = 1 + sum(sim[j, i] >= sim[i, i] for j in range(n) if j != i)
        out[i] = (1 / s2t + 1 / t2s) / 2
    return out


@pytest.mark.parametrize("seed", range(6))
def test_reciprocal_rank_with_ties_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    sim = rng.integers(-2, 3, size=(7, 7)).astype(float) / 2  # many exact ties
    assert np.array_equal(reciprocal_ranks(sim), _brute_rr(sim))
    assert np.allclose(reciprocal_ranks(np.ones((5, 5))), 1 / 5)  # collapse: the floor, not chance
    assert chance_mrr(4) == pytest.approx((1 + 1 / 2 + 1 / 3 + 1 / 4) / 4)


def test_control_pairing_is_a_seeded_derangement_per_part():
    a, b = evaluate.control_pairing(9, 4, seed=3)
    assert sorted(a) == list(range(9)) and sorted(b) == list(range(4))
    assert (a != np.arange(9)).all() and (b != np.arange(4)).all()  # nobody keeps its partner
    again = evaluate.control_pairing(9, 4, seed=3)
    assert np.array_equal(a, again[0]) and np.array_equal(b, again[1])
    assert not np.array_equal(a, evaluate.control_pairing(9, 4, seed=4)[0])


def _cv_world(tmp_path: Path, signal: float = 1.0, **analysis):
    w = make_world(
        tmp_path, n=48, d_structure=8, d_text=10, noise=0.3, signal=signal, align={"epochs": 30, "lr": 0.01}
    )
    clusters = {i: f"c{j // 3}" for j, i in enumerate(w.ids)}  # clusters of three
    k = 3
    methods = {m: kfold(w.ids, k, 0, clusters if m == "cluster" else None) for m in ("random", "cluster")}
    write_json(
        w.paths.folds, {"k": k, "seed": 0, "cluster_identity": 0.3, "methods": methods, "clusters": clusters}
    )
    a = {
        "folds": k,
        "seeds": (0, 1),
        "depth_seeds": (1,),
        "n_boot": 200,
        "workers": 1,
        "depths": (1, 2),
        **analysis,
    }
    params = w.params
    for key, value in a.items():
        params = with_params(params, f"analysis.{key}", value)
    params = with_params(params, "split.method", "cluster")
    return w, params


def _constant_heads(config, seed):
    """Heads whose output is one fixed vector whatever the input: a fully collapsed model."""
    text, structure = build_heads(config, seed)
    with torch.no_grad():
        for layer in (text.proj, structure.net[-1]):
            layer.weight.zero_()
            layer.bias.fill_(1.0)
    return text, structure


def _collapsed_fit(train_pairs, val_pairs, config, align, on_epoch=None):
    text, structure = _constant_heads(config, int(align.seed))
    return FitResult(text, structure, [], 1, 0.0)


def test_crossval_headline_keys_archive_and_recomputation(tmp_path):
    w, params = _cv_world(tmp_path)
    metrics = cv.run(params, w.paths, "llm-a", "gdm-x")
    on_disk = read_json(w.paths.cv_metrics("llm-a", "gdm-x"))
    assert on_disk["headline_method"] == "cluster" and not on_disk["headline_leaky"]
    assert on_disk["headline_ci_low"] > 0.05  # real signal beats the shuffled pairing by a wide margin
    assert on_disk["headline_ci_low"] <= on_disk["headline_gain"] <= on_disk["headline_ci_high"]
    assert {"score_gain_control", "score_gain_control_ci_low", "score_gain_control_ci_high"} <= set(on_disk)
    assert set(metrics["methods"]) == {"cluster", "cluster_strict", "random"}
    rnd, clu = metrics["methods"]["random"], metrics["methods"]["cluster"]
    assert rnd["leaky"] and "homology-leaky" in rnd["label"] and not clu["leaky"]
    for key in ("rr", "rr_control", "rr_gain", "control_alignment_score", "score_gain_control", "recall@1"):
        assert {"estimate", "ci_low", "ci_high", "n", "n_units"} <= set(clu[key])
    assert clu["n_units"] == 16 and clu["n_seeds"] == 2
    # chance from each scored protein's fold size: k/n and H_n/n, averaged over the proteins
    sizes = np.bincount(list(read_json(w.paths.folds)["methods"]["cluster"].values()))
    assert clu["chance_mrr"] == pytest.approx(sum(n * chance_mrr(n) for n in sizes) / 48)
    assert clu["chance_recall@5"] == pytest.approx(sum(n * 5 / n for n in sizes) / 48)
    assert clu["rr_control"]["estimate"] < 2 * clu["chance_mrr"] < clu["rr"]["estimate"]
    # strict: only the primary split's val + test proteins
    strict_ids = set(w.split["val"]) | set(w.split["test"])
    assert metrics["methods"]["cluster_strict"]["n_proteins"] == len(strict_ids)

    path = w.paths.cv_seeds("llm-a", "gdm-x")
    with gzip.open(path, "rt") as fh:
        header = fh.readline().strip().split(",")
    assert header == list(cv_summary.ARCHIVE_COLUMNS)[: len(header)] and header[:12] == [
        "id", "method", "seed", "fold", "cluster", "rr", "rr_control", "rr_untrained",
        "score", "score_control", "score_untrained", "matched",
    ]  # fmt: skip
    raw = path.read_bytes()
    assert raw[4:8] == b"\0\0\0\0" and not raw[3] & 0x08  # mtime 0, no file name: portable hashes
    archive = pd.read_csv(path, dtype={"id": str, "cluster": str})
    assert len(archive) == 2 * (48 + 48 + len(strict_ids))  # seeds x (cluster + random + strict) proteins
    assert (
        archive.loc[archive["method"] == "random", "cluster"]
        == archive.loc[archive["method"] == "random", "id"]
    ).all()

    # recompute the headline interval from the archive alone
    rows = archive[archive["method"] == "cluster"]
    diff = rows.pivot(index="id", columns="seed", values="rr") - rows.pivot(
        index="id", columns="seed", values="rr_control"
    )
    units = rows.drop_duplicates("id").set_index("id")["cluster"].reindex(diff.index)
    a = params.analysis
    iv = stats.hierarchical_ci(
        diff.to_numpy(), clusters=units.tolist(), n_boot=a.n_boot, ci=a.ci, seed=a.seed
    )
    assert (iv.estimate, iv.low, iv.high) == pytest.approx(
        (on_disk["headline_gain"], on_disk["headline_ci_low"], on_disk["headline_ci_high"]),
        rel=1e-12,
        abs=1e-12,
    )
    # same params -> same archive bytes
    cv.run(params, w.paths, "llm-a", "gdm-x")
    assert path.read_bytes() == raw


def test_control_fits_on_permuted_pairs_and_scores_the_true_ones(tmp_path, monkeypatch):
    w, params = _cv_world(tmp_path, seeds=(5,), methods=("cluster",))
    seen = []

    def untrained_fit(train_pairs, val_pairs, config, align, on_epoch=None):
        seen.append((train_pairs[0].copy(), train_pairs[1].copy(), val_pairs[0].copy(), int(align.seed)))
        return FitResult(*build_heads(config, int(align.seed)), [], 1, 0.0)

    monkeypatch.setattr(cv, "fit_heads", untrained_fit)
    metrics = cv.run(params, w.paths, "llm-a", "gdm-x")
    assert len(seen) == 2 * 3 and {s[3] for s in seen} == {5}  # real + control per fold, the same head seed
    for (t_real, s_real, v_real, _), (t_ctrl, s_ctrl, v_ctrl, _) in zip(seen[::2], seen[1::2], strict=True):
        perm, vperm = evaluate.control_pairing(len(t_real), len(v_real), 5)
        assert np.array_equal(s_ctrl, s_real) and np.array_equal(t_ctrl, t_real[perm])
        assert np.array_equal(v_ctrl, v_real[vperm]) and not np.array_equal(t_ctrl, t_real)
    # identical heads for real and control: the control is scored on the same TRUE test pairs, cell by cell
    archive = cv_summary.read_archive(w.paths.cv_seeds("llm-a", "gdm-x"))
    assert np.array_equal(archive["rr"], archive["rr_control"]) and metrics["headline_gain"] == 0.0


def test_collapsed_heads_cannot_win_the_headline(tmp_path, monkeypatch):
    """Constant heads through the production align -> evaluate (+ control) and crossval (+ control) paths."""
    w, params = _cv_world(tmp_path)
    for module in (train, evaluate, cv):
        monkeypatch.setattr(module, "fit_heads", _collapsed_fit)
    train.train_pair(params, w.paths, "llm-a", "gdm-x")
    test_metrics = evaluate.run(params, w.paths, "llm-a", "gdm-x")
    assert test_metrics["rr_gain_control"] <= 0 and test_metrics["alignment_gain_control"] <= 0
    assert test_metrics["rr_mean"] <= test_metrics["chance_mrr"]
    metrics = cv.run(params, w.paths, "llm-a", "gdm-x")
    assert metrics["headline_ci_high"] <= 0 and metrics["score_gain_control_ci_high"] <= 0


def test_head_depth_reuses_crossval_seeds_without_control(tmp_path):
    w, params = _cv_world(tmp_path)
    cv.run(params, w.paths, "llm-a", "gdm-x")
    out = cv.run_depths(params, w.paths, "llm-a", "gdm-x")
    assert set(out) == {1, 2} and out[1]["seeds"] == [1] == out[2]["seeds"]
    for d in (1, 2):
        archive = cv_summary.read_archive(w.paths.cv_seeds("llm-a", "gdm-x", f"L{d}"))
        assert set(archive["method"]) == {"cluster"} and set(archive["seed"]) == {1}
        assert archive["rr_control"].isna().all() and archive["rr"].notna().all()
        assert out[d]["headline_gain"] is None and not out[d]["methods"]["cluster"]["control"]
    full = cv_summary.read_archive(w.paths.cv_seeds("llm-a", "gdm-x"))
    reused = full[(full["method"] == "cluster") & (full["seed"] == 1)].reset_index(drop=True)
    l1 = cv_summary.read_archive(w.paths.cv_seeds("llm-a", "gdm-x", "L1"))
    assert np.array_equal(l1["rr"], reused["rr"])  # the saved depth is reused, not refitted


def test_shared_draws_equal_one_interval_at_a_time():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(30, 4)), rng.normal(size=(30, 4))
    a[3, 1] = np.nan
    units = [f"c{i % 7}" for i in range(30)]
    both = stats.hierarchical_cis({"a": a, "b": b}, clusters=units, n_boot=300, seed=2)
    for name, m in (("a", a), ("b", b)):
        assert both[name] == stats.hierarchical_ci(m, clusters=units, n_boot=300, seed=2)
