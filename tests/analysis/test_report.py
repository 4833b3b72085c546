"""`report` stage: table + figures over every pair in params, from real align/evaluate outputs on tiny data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.image import imread

from params_helpers import default_params
from protalign.align import evaluate, train
from protalign.analysis import report
from protalign.params import Params
from protalign.paths import Paths
from protalign.storage import EmbeddingSet, load_embeddings, save_embeddings, write_json

LLMS, GDMS = ("llm-a", "llm-b"), ("gdm-x",)


def _pipeline(root, run_pairs=True) -> tuple[Params, Paths]:
    """Two LLMs x one GDM on 100 synthetic proteins; llm-b's text is unrelated to structure (weaker pair)."""
    rng = np.random.default_rng(0)
    ids = [f"Q{i:03d}" for i in range(100)]
    paths = Paths(root)
    structure = rng.normal(size=(100, 6))
    save_embeddings(paths.structure_embeddings("gdm-x"), EmbeddingSet(ids, structure.astype(np.float32), {}))
    related = structure @ rng.normal(size=(6, 10)) + 0.3 * rng.normal(size=(100, 10))
    unrelated = rng.normal(size=(100, 10))
    for llm, text in (("llm-a", related), ("llm-b", unrelated)):
        save_embeddings(paths.text_embeddings(llm), EmbeddingSet(ids, text.astype(np.float32), {}))
    write_json(paths.split, {"train": ids[:60], "val": ids[60:80], "test": ids[80:]})
    params = default_params(
        embed_text={"llms": LLMS},
        structure={"gdms": GDMS},
        align={"llms": (), "patience": None, "epochs": 40},
        evaluate={"ks": (1, 5)},
    )
    if run_pairs:
        for llm in LLMS:
            train.train_pair(params, paths, llm, "gdm-x")
            evaluate.run(params, paths, llm, "gdm-x")
    return params, paths


def test_report_table_and_figures(tmp_path):
    params, paths = _pipeline(tmp_path)
    table = report.run(params, paths)
    on_disk = pd.read_csv(paths.reports / "alignment.csv")
    assert on_disk[["llm", "gdm"]].values.tolist() == [["llm-a", "gdm-x"], ["llm-b", "gdm-x"]]
    assert on_disk["pair"].tolist() == ["llm-a__gdm-x", "llm-b__gdm-x"]
    assert list(on_disk.columns) == report.table_columns((1, 5))
    for col in ("alignment_score", "baseline_alignment_score", "recall@5_t2s", "mrr_s2t", "n_test"):
        assert col in on_disk.columns
    assert (on_disk["n_test"] == 20).all()
    metrics_a = evaluate.evaluate_pair(params, paths, "llm-a", "gdm-x")[0]
    assert on_disk.loc[0, "alignment_score"] == pytest.approx(metrics_a["alignment_score"], abs=1e-6)
    assert table.loc[0, "alignment_score"] > table.loc[1, "alignment_score"]  # related text aligns better
    for name in ("alignment.png", "matched_cosine.png"):
        image = imread(paths.reports / name)
        assert image.ndim == 3 and image.shape[0] > 100 and image.std() > 0  # a real, non-blank picture


def test_report_is_byte_deterministic(tmp_path):
    params, paths = _pipeline(tmp_path)
    report.run(params, paths)
    first = {p.name: p.read_bytes() for p in paths.reports.iterdir() if p.is_file()}
    report.run(params, paths)
    second = {p.name: p.read_bytes() for p in paths.reports.iterdir() if p.is_file()}
    assert first == second and set(first) == {"alignment.csv", "alignment.png", "matched_cosine.png"}


def test_missing_pair_is_an_error_not_a_shorter_table(tmp_path):
    params, paths = _pipeline(tmp_path, run_pairs=False)
    train.train_pair(params, paths, "llm-a", "gdm-x")
    evaluate.run(params, paths, "llm-a", "gdm-x")
    with pytest.raises(FileNotFoundError, match="llm-b/gdm-x"):
        report.run(params, paths)
    assert not (paths.reports / "alignment.csv").exists()


def test_pairs_are_compared_on_the_ids_every_pair_evaluated(tmp_path, capsys):
    params, paths = _pipeline(tmp_path, run_pairs=False)
    full = load_embeddings(paths.text_embeddings("llm-b"))
    gone = ["Q080", "Q081", "Q095"]  # test proteins llm-b could not embed
    keep = [i for i in full.ids if i not in gone]
    meta = {"skipped": [{"id": i, "reason": "empty summary text"} for i in gone]}
    save_embeddings(paths.text_embeddings("llm-b"), EmbeddingSet(keep, full.subset(keep), meta))
    for llm in LLMS:
        train.train_pair(params, paths, llm, "gdm-x")
        evaluate.run(params, paths, llm, "gdm-x")
    table = report.run(params, paths)
    assert table["n_test"].tolist() == [20, 17] and table["n_test_lost"].tolist() == [0, 3]
    assert (table["n_test_split"] == 20).all() and (table["n_common"] == 17).all()
    a = pd.read_csv(paths.per_protein("llm-a", "gdm-x"), dtype={"id": str}).set_index("id")
    common = [i for i in a.index if i not in gone]
    assert table.loc[0, "matched_cosine_mean_common"] == pytest.approx(a.loc[common, "matched_cosine"].mean())
    assert table.loc[0, "matched_cosine_mean_common"] != pytest.approx(table.loc[0, "matched_cosine_mean"])
    assert "compared on the 17 test proteins every pair evaluated" in capsys.readouterr().out
