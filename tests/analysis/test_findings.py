"""The analysis stages end to end on a small synthetic run: clusters -> folds -> crossval / head_depth ->
correlate / properties -> findings. Text is a noisy linear map of structure; the GearNet-like GDM carries the
signal, the GAT-like one only half of it, so F1 has a known direction."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from params_helpers import default_params
from protalign.align.heads import HeadConfig, StructureHead, structure_widths
from protalign.analysis import correlations, cv, findings, properties
from protalign.analysis.evidence import seeds_path
from protalign.corpus import clusters, folds
from protalign.paths import Paths
from protalign.storage import EmbeddingSet, load_embeddings, save_embeddings, write_json

LLMS, GDMS = ("tiny-1m", "tiny-10m"), ("gearnet_edge", "gat")


def _world(root, n=90):
    rng = np.random.default_rng(0)
    ids = [f"X{i:03d}" for i in range(n)]
    paths = Paths(root)
    paths.prepared.mkdir(parents=True)
    names = [f"PROTEIN (KINASE {i % 3})" if i % 2 else f"rare thing {i}" for i in range(n)]
    pq.write_table(
        pa.table({
            "id": ids, "length": rng.integers(30, 400, n).tolist(), "n_chains": rng.integers(1, 4, n).tolist(),
            "molecule_names": [[m] for m in names], "sequence": ["ACDE" * 10] * n,
            "coord_hash": [f"h{i}" for i in ids],
        }),
        paths.proteins,
    )  # fmt: skip
    labels = [f"C{i // 3}" for i in range(n)]  # clusters of three
    table = pd.DataFrame(
        {"id": ids, "cluster_30": labels, "cluster_30_size": 3, "cluster_50": ids, "cluster_50_size": 1}
    )
    table.to_parquet(paths.clusters, index=False)
    write_json(
        paths.split,
        {"train": ids[: n * 3 // 5], "val": ids[n * 3 // 5 : n * 4 // 5], "test": ids[n * 4 // 5 :]},
    )
    core = rng.normal(size=(n, 8))
    save_embeddings(
        paths.structure_embeddings("gearnet_edge"), EmbeddingSet(ids, core.astype(np.float32), {})
    )
    weak = np.hstack([core[:, :4], rng.normal(size=(n, 4))])
    save_embeddings(paths.structure_embeddings("gat"), EmbeddingSet(ids, weak.astype(np.float32), {}))
    for k, llm in enumerate(LLMS):
        text = core @ rng.normal(size=(8, 12)) + (0.5 + k) * rng.normal(size=(n, 12))
        save_embeddings(paths.text_embeddings(llm), EmbeddingSet(ids, text.astype(np.float32), {}))
    params = default_params(
        embed_text={"llms": LLMS},
        structure={"gdms": GDMS},
        align={"llms": (), "patience": None, "epochs": 15, "batch_size": 16, "lr": 3e-3},
        analysis={"folds": 3, "seeds": (0, 1), "depths": (1, 2), "n_boot": 200, "bins": 3, "workers": 1},
    )
    return params, paths


def test_head_widths_follow_the_study_rule():
    config = HeadConfig(text_dim=2304, structure_dim=3072, dim=2304, structure_layers=3)
    assert structure_widths(config) == [3072, 2816, 2560, 2304]
    head = StructureHead(config)
    assert [m.out_features for m in head.net if hasattr(m, "out_features")] == [2816, 2560, 2304]
    fixed = HeadConfig(text_dim=8, structure_dim=6, dim=8, structure_layers=2, hidden_dim=5)
    assert structure_widths(fixed) == [6, 5, 8]


def test_mmseqs_clusters_group_homologues():
    rng = np.random.default_rng(0)
    aa = np.array(list("ACDEFGHIKLMNPQRSTVWY"))
    seqs = {}
    for fam in range(2):
        base = rng.choice(aa, 120)
        for m in range(3):
            s = base.copy()
            s[rng.choice(120, 6, replace=False)] = rng.choice(aa, 6)  # ~95% identity within a family
            seqs[f"F{fam}M{m}"] = "".join(s)
    seqs["LONE"] = "".join(rng.choice(aa, 100))
    table = clusters.cluster_table(seqs, [0.5], coverage=0.8, threads=1)
    reps = dict(zip(table["id"], table["cluster_50"], strict=True))
    assert len({reps[f"F0M{m}"] for m in range(3)}) == 1 and len({reps[f"F1M{m}"] for m in range(3)}) == 1
    assert reps["F0M0"] != reps["F1M0"] and reps["LONE"] == "LONE"
    assert dict(zip(table["id"], table["cluster_50_size"], strict=True))["F1M2"] == 3


def test_clean_name():
    assert properties.clean_name("PROTEIN (NINE-HAEM CYTOCHROME C)") == "nine haem cytochrome"
    assert properties.clean_name("Fasciculin 1") == properties.clean_name("FASCICULIN-2") == "fasciculin"
    assert properties.clean_name("CRAMBIN (PRO22,SER22/LEU25,ILE25)") == "crambin"


def test_analysis_stages_on_a_small_run(tmp_path):
    params, paths = _world(tmp_path)
    f = folds.run(params, paths)
    side = f["methods"]["cluster"]
    for c in set(f["clusters"].values()):  # the cluster folds never split a cluster
        assert len({side[i] for i, lab in f["clusters"].items() if lab == c}) == 1
    for llm in LLMS:
        for gdm in GDMS:
            m = cv.run(params, paths, llm, gdm)
            assert set(m["methods"]) == {"random", "cluster", "cluster_strict"}  # strict: primary val + test
            assert m["methods"]["cluster_strict"]["n_proteins"] == 36
            r = m["methods"]["random"]
            assert r["n_proteins"] == 90 and m["methods"]["cluster"]["n_units"] == 30
            assert len(r["seed_scores"]) == 2
            table = pd.read_csv(paths.cv_per_protein(llm, gdm))
            random_rows = table[table["method"] == "random"]
            assert len(table) == 180 + 36 and random_rows["score"].mean() == pytest.approx(
                r["alignment_score"]["estimate"], abs=1e-6
            )
            depths = cv.run_depths(params, paths, llm, gdm)
            assert sorted(depths) == sorted(params.analysis.depths)
            assert sorted(p.name for p in paths.depth_metrics(llm, gdm).iterdir()) == [
                f"L{d}.json" for d in sorted(params.analysis.depths)
            ]
            assert all(m["structure_layers"] == d for d, m in depths.items())
    # the saved depth is copied from crossval's archive (depth_seeds, no control), not refitted
    depth_run = dataclasses.replace(
        params,
        analysis=dataclasses.replace(params.analysis, seeds=params.analysis.depth_seeds, control=False),
    )
    for d in (1, 2):  # L2 was refitted (all depths share one pool); both equal a plain crossval at that depth
        stored = json.loads(paths.cv_metrics("tiny-1m", "gat", f"L{d}").read_text())
        fitted, _ = cv.crossval(depth_run, paths, "tiny-1m", "gat", ["cluster"], layers=d)
        assert stored["methods"] == json.loads(json.dumps({"cluster": fitted["methods"]["cluster"]}))
    strong = json.loads(paths.cv_metrics("tiny-1m", "gearnet_edge").read_text())["methods"]["random"]
    assert strong["gain_over_baseline"]["ci_low"] > 0  # training helps, and the interval says so
    corr = correlations.run(params, paths)
    assert len(corr) == 6 and corr["pearson"].between(-1, 1).all()
    props = properties.run(params, paths)
    assert set(props["property"]) == {
        "length",
        "n_chains",
        "name_count",
        "cluster_30_size",
        "cluster_50_size",
    }
    assert props.loc[props["property"] == "cluster_30_size", "rho"].isna().all()  # constant: undefined
    findings.run(params, paths)
    md = (paths.reports / "findings.md").read_text()
    for key in (
        "F1 (RQ1)",
        "F2 (RQ1)",
        "F3 (RQ3)",
        "F4 (RQ3)",
        "F5 (RQ3)",
        "F6 (RQ4)",
        "F7 (RQ5)",
        "F8 (RQ6)",
    ):
        assert key in md
    summary = md.split("## F1 (RQ1)")[0]  # the page opens with the verdicts, the rules and Table 1 per GDM
    assert "verdict (cluster folds)" in summary and "random (homology-leaky)" in summary
    assert "Verdict rules" in summary and "paper, LLaMA-3.1-8B: score" in summary
    f1 = md.split("## F1 (RQ1)")[1].split("##")[0]
    if seeds_path(paths, "tiny-1m", "gearnet_edge").exists():  # crossval writes per-seed archives
        assert "Verdict: reproduced" in f1, f1  # the graph+3D stand-in carries more signal by construction
    else:  # crossval outputs without the archive: a clear reason, never a crash
        assert "Verdict: not testable here" in f1 and "rerun crossval" in f1, f1
    assert "Verdict: not testable here" in md.split("## F6 (RQ4)")[1].split("##")[0]
    html = (paths.reports / "findings.html").read_text()
    assert html.count("data:image/png;base64,") >= 5
    matrix = pd.read_csv(paths.reports / "alignment_matrix.csv")
    assert len(matrix) == 12 and set(matrix["method"]) == {"random", "cluster", "cluster_strict"}
    t1 = pd.read_csv(paths.reports / "table1.csv")
    assert t1["study_same_llm"].isna().all()  # no study LLM in this run ...
    assert (t1.loc[t1["gdm"] == "gearnet_edge", "paper_llama31-8b"] == 0.3211).all()  # ... the paper's beside


def test_crossval_in_worker_processes_equals_in_process(tmp_path):
    """Each (seed, fold) fit is seeded on its own, so fitting them in spawned processes changes nothing."""
    import dataclasses

    params, paths = _world(tmp_path)
    folds.run(params, paths)
    one, t1 = cv.crossval(params, paths, "tiny-1m", "gearnet_edge", ["random", "cluster"])
    par = dataclasses.replace(params, analysis=dataclasses.replace(params.analysis, workers=2))
    two, t2 = cv.crossval(par, paths, "tiny-1m", "gearnet_edge", ["random", "cluster"])
    assert one == two
    pd.testing.assert_frame_equal(t1, t2)
    other = dataclasses.replace(params, analysis=dataclasses.replace(params.analysis, seeds=(5, 6)))
    assert (
        cv.crossval(other, paths, "tiny-1m", "gearnet_edge", ["random"])[0]["methods"]["random"]
        != one["methods"]["random"]
    )  # the comparison can fail: other seeds give other fits


def test_llm_size_and_table1():
    assert findings.llm_size("llama31-70b") == 70e9 and findings.llm_size("smollm2-135m") == 135e6
    assert findings.llm_size("gemma3-270m") == 270e6 and findings.llm_size("nameless") is None
    m = pd.DataFrame([{"gdm": "gearnet_edge", "llm": "llama31-8b", "method": "random", "test_split_score": 0.1,
                       "score": 0.2, "ci_low": 0.1, "ci_high": 0.3}])  # fmt: skip
    t1 = findings.table1(m, "random")
    assert t1["study_same_llm"].tolist() == [0.3211] and t1["paper_gemma2-2b"].tolist() == [0.2958]


def test_crossval_scores_the_pairs_own_ids_and_reports_losses(tmp_path, capsys):
    params, paths = _world(tmp_path)
    folds.run(params, paths)
    gone = ["X001", "X050"]  # gat could not embed two proteins: only gat's pairs lose them
    full = load_embeddings(paths.structure_embeddings("gat"))
    keep = [i for i in full.ids if i not in gone]
    meta = {"skipped": [{"id": i, "reason": "too big"} for i in gone]}
    save_embeddings(paths.structure_embeddings("gat"), EmbeddingSet(keep, full.subset(keep), meta))
    fast = dataclasses.replace(params, analysis=dataclasses.replace(params.analysis, seeds=(0,), n_boot=50))
    fast = dataclasses.replace(fast, align=dataclasses.replace(params.align, epochs=2))
    m = cv.run(fast, paths, "tiny-1m", "gat")
    assert (m["n_fold_proteins"], m["n_lost"]) == (90, 2)
    assert m["lost"] == {"X001": "structure/gat: too big", "X050": "structure/gat: too big"}
    assert all(v["n_proteins"] == 88 for k, v in m["methods"].items() if k != "cluster_strict")
    assert set(pd.read_csv(paths.cv_per_protein("tiny-1m", "gat"))["id"]).isdisjoint(gone)
    other = cv.crossval(fast, paths, "tiny-1m", "gearnet_edge", ["random"])[0]
    assert other["n_lost"] == 0 and other["methods"]["random"]["n_proteins"] == 90
    assert "lost 2 of 90 fold proteins: X001 (structure/gat: too big)" in capsys.readouterr().out
