"""The homology look-up reference (analysis/lookup.py), the all-vs-all search (corpus/homologs.py) and the
ranking table that shows both beside the encoders (analysis/ranking.py)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from params_helpers import default_params
from protalign.analysis import lookup, ranking
from protalign.corpus.homologs import homologs_path, order_hits, search_all_vs_all
from protalign.paths import Paths
from protalign.storage import EmbeddingSet, read_json, save_embeddings, write_parquet

N_PAIRS = 30  # proteins come in twins: P<k>a and P<k>b are homologues with almost the same description


def _project(tmp_path, cluster_twins_together: bool = True) -> Paths:
    """60 proteins = 30 twins. Random folds put twins apart (the look-up finds the twin in train); cluster folds
    keep each twin pair in one fold (one cluster), so no test protein has a train homologue."""
    rng = np.random.default_rng(0)
    ids, vectors, hits = [], [], []
    for k in range(N_PAIRS):
        base = rng.standard_normal(16)
        for side in "ab":
            ids.append(f"P{k:02d}{side}")
            vectors.append(base + 0.05 * rng.standard_normal(16))
        hits += [(f"P{k:02d}a", f"P{k:02d}b", 0.9), (f"P{k:02d}b", f"P{k:02d}a", 0.9)]
    # a weaker decoy hit for P00a (lower identity: must lose to the twin wherever both are in train)
    hits.append(("P00a", "P05a", 0.35))
    paths = Paths(tmp_path)
    save_embeddings(paths.text_embeddings("llm-x"), EmbeddingSet(ids, np.array(vectors, dtype=np.float32), {}))
    cluster_fold = {i: int(i[1:3]) % 5 for i in ids}  # twins share a fold
    # twins two folds apart: when one is tested (fold f; f+1 validates) the other trains
    random_fold = {i: (int(i[1:3]) + 2 * (i[-1] == "b")) % 5 for i in ids}
    folds = {"k": 5, "seed": 0, "cluster_identity": 0.3, "clusters": {i: i[:3] for i in ids},
             "methods": {"cluster": cluster_fold if cluster_twins_together else random_fold, "random": random_fold}}
    paths.prepared.mkdir(parents=True, exist_ok=True)
    paths.folds.write_text(json.dumps(folds))
    paths.split.write_text(json.dumps({"train": ids[:40], "val": ids[40:50], "test": ids[50:]}))
    frame = pd.DataFrame(hits, columns=["query", "target", "identity"]).assign(evalue=1e-10, bits=100.0)
    write_parquet(homologs_path(paths), order_hits(frame))
    return paths


def _params():
    return default_params(analysis={"seeds": [0, 1], "n_boot": 200, "methods": ["cluster", "random"]},
                          split={"method": "cluster"})  # fmt: skip


def test_best_hit_is_the_most_identical_train_protein_never_self():
    ids = ["A", "B", "C", "D"]
    hits = order_hits(pd.DataFrame({"query": ["A", "A", "A", "A"], "target": ["A", "B", "C", "D"],
                                    "identity": [1.0, 0.9, 0.5, 0.95], "evalue": 1e-9, "bits": 50.0}))  # fmt: skip
    assert "A" not in set(hits["target"])  # self hit dropped
    train = np.array([False, True, True, False])  # D (0.95) is not in train: B (0.9) wins
    best, ident = lookup.best_hits(hits, ids, train)
    assert best.tolist() == [1, -1, -1, -1] and ident[0] == pytest.approx(0.9)
    best, _ = lookup.best_hits(hits, ids, np.array([False, False, True, False]))
    assert best[0] == 2  # only C left


def test_lookup_earns_under_random_folds_and_nothing_under_cluster_folds(tmp_path):
    paths = _project(tmp_path)
    metrics = lookup.run(_params(), paths, "llm-x")
    rnd, clu = metrics["methods"]["random"], metrics["methods"]["cluster"]
    assert rnd["hit_rate"] == 1.0 and clu["hit_rate"] < 0.1  # only the decoy can ever be found under cluster
    assert rnd["rr"]["estimate"] > 0.9  # the twin's text is almost the protein's own
    assert rnd["rr_gain"]["ci_low"] > 0.3  # far above its control (the twin's text re-paired)
    assert abs(clu["rr_gain"]["estimate"]) < 0.02  # nothing to look up: real ~ control
    assert metrics["headline_method"] == "cluster" and metrics["headline_gain"] == clu["rr_gain"]["estimate"]
    assert "cluster_strict" in metrics["methods"]
    on_disk = read_json(lookup.lookup_paths(paths, "llm-x")[0])
    assert on_disk["headline_gain"] == metrics["headline_gain"]
    table = pd.read_csv(lookup.lookup_paths(paths, "llm-x")[1], dtype={"id": str, "hit": str})
    twin = table[(table["method"] == "random") & (table["id"] == "P03a")].iloc[0]
    assert twin["hit"] == "P03b" and twin["hit_identity"] == pytest.approx(0.9)


def test_lookup_interval_recomputes_from_the_archive(tmp_path):
    from protalign.analysis import cv_summary, stats

    paths = _project(tmp_path)
    params = _params()
    metrics = lookup.run(params, paths, "llm-x")
    arch = cv_summary.read_archive(lookup.lookup_paths(paths, "llm-x")[2])
    rows = arch[arch["method"] == "random"]
    ids, seeds = sorted(rows["id"].unique()), sorted(rows["seed"].unique())
    diff = cv_summary.matrix(rows, "rr", ids, seeds) - cv_summary.matrix(rows, "rr_control", ids, seeds)
    units = rows.drop_duplicates("id").set_index("id")["cluster"].reindex(ids).tolist()
    iv = stats.hierarchical_ci(diff, units, params.analysis.n_boot, params.analysis.ci, params.analysis.seed)
    assert iv.low == pytest.approx(metrics["methods"]["random"]["rr_gain"]["ci_low"], abs=1e-12)


def test_ranking_orders_by_headline_and_labels_references(tmp_path):
    paths = _project(tmp_path)
    params = default_params(structure={"gdms": ["gat", "composition"]}, align={"llms": ["llm-x"]})
    lookup.run(_params(), paths, "llm-x")

    def cv(gain):
        iv = {"estimate": gain, "ci_low": gain - 0.01, "ci_high": gain + 0.01}
        return {"methods": {"cluster": {"rr_gain": iv, "alignment_score": iv, "score_gain_control": iv}}}

    table = ranking.ranking_table(params, paths, {"llm-x__gat": cv(0.05), "llm-x__composition": cv(0.08)})
    assert table["encoder"].tolist()[:2] == ["composition", "gat"]  # ranked by the headline
    assert table["rank"].tolist() == [1, 2, 3]
    kinds = dict(zip(table["encoder"], table["kind"], strict=True))
    assert kinds["composition"].startswith("reference: floor") and kinds["gat"] == "GDM"
    assert kinds[ranking.LOOKUP].startswith("reference: look-up")
    assert "—" not in ranking.shown(table).iloc[0, 4]


def test_all_vs_all_search_finds_the_homologue_and_drops_self():
    seq = "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQAPILSRVGDGTQDNLSGAEKAVQVKVKALPDAQFEVVHSLAKWKRQTLGQHDFSAGEGLYTHMKALRPDEDRLSPLHSVYVDQWDWERVMGDGERQFSTLKSTVEAIWAGIKATEAAVSEEFGLAPFLPDQIHFVHSQELLSRYPDLDAKGRERAIAKDLGAVFLVGIGGKLSDGHRHDVRAPDYDDWUAAAAAAAA"
    mutant = seq[:20] + "W" + seq[21:60] + "G" + seq[61:]
    other = "GSHMSLFDFFKNKGSAAATATGSAPIGSEEEVKALVEKHLGVSAEKVTPEARFVEDLGADSLDTVELVMALEEEFDTEIPDEEAEKITTVQAAIDYINGHQA"
    hits = search_all_vs_all({"A": seq.replace("U", "C"), "B": mutant.replace("U", "C"), "C": other}, 0.8)
    pairs = set(zip(hits["query"], hits["target"], strict=True))
    assert ("A", "B") in pairs and ("B", "A") in pairs
    assert not any(q == t for q, t in pairs) and not any("C" in p for p in pairs)
    assert hits["identity"].between(0.9, 1.0).all()
