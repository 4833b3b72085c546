"""train_structure / embed_structure on real proteins in a scratch repository (store written with write_store)."""

from __future__ import annotations

import dataclasses
import sqlite3

import numpy as np
import pytest
import torch

from params_helpers import default_params
from protalign.corpus.store import StructureStore, write_store
from protalign.errors import UserError
from protalign.params import Params
from protalign.paths import Paths
from protalign.storage import load_embeddings, write_json
from protalign.structure import embed as embed_stage
from protalign.structure import registry
from protalign.structure import train as train_stage

TRAIN = ["107L", "154L", "161L", "162L", "163L", "164L"]
VAL = ["165L", "171L"]


def _params(**train) -> Params:
    cfg = dict(epochs=2, lr=0.003, batch_size=3, mask_rate=0.2, max_residues=96, seed=0)
    cfg.update(train)
    gat = {"hidden": 4, "heads": 2, "layers": 2, "dropout": 0.1}
    return default_params(structure={"gat": gat, "pooling": "meanmax", "threads": 1, "train": cfg})


@pytest.fixture(scope="module")
def structures(shared_data):
    from protalign.corpus.structures import parse_structure

    out = {}
    for pid in TRAIN + VAL:
        files = sorted((shared_data / "structures").glob(f"{pid}.*"))
        if not files:
            pytest.skip(f"{pid} missing from the shared corpus")
        out[pid] = parse_structure(files[0], pid).structure
    return out


def _make_repo(root, structures) -> Paths:
    """A scratch repository with prepared/structures (8 real + 1 broken entry) and prepared/split.json."""
    paths = Paths(root)
    bad = dataclasses.replace(structures["107L"], id="ZBAD", ca=np.full_like(structures["107L"].ca, np.nan))
    write_store(paths.structures, [structures[i] for i in sorted(structures)] + [bad])
    write_json(
        paths.split,
        {
            "method": "random",
            "seed": 0,
            "fractions": [0.8, 0.1, 0.1],
            "train": TRAIN,
            "val": VAL,
            "test": ["ZBAD"],
        },
    )
    return paths


@pytest.fixture(scope="module")
def trained(tmp_path_factory, structures):
    """One train_structure run shared by the tests (MLflow store creation alone takes seconds)."""
    root = tmp_path_factory.mktemp("repo")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PROTALIGN_MAIN_ROOT", str(root))  # MLflow store in the scratch repo
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        mp.delenv("DVC_EXP_NAME", raising=False)
        paths = _make_repo(root, structures)
        summary = train_stage.run(_params(), paths, "gat")
    return paths, summary


class _Store:
    def __init__(self, structures):
        self.structures = structures

    def get(self, pid):
        return self.structures[pid]


def _samples(structures, ids, enc):
    items, skipped = train_stage.featurize_many(enc, _Store(structures), ids, "test")
    assert not skipped
    return items


def test_train_saves_reloadable_model_and_logs(trained):
    repo, summary = trained
    assert [h["epoch"] for h in summary["history"]] == [1, 2]
    assert all(
        np.isfinite(h["val_loss"]) and 0 <= h["val_residue_type_acc"] <= 1 and h["val_distance_mae"] > 0
        for h in summary["history"]
    )
    assert summary["n_train"] == 6 and summary["n_val"] == 2 and summary["selection"] == "val_loss"
    best = min(summary["history"], key=lambda h: h["val_loss"])
    assert summary["best_epoch"] == best["epoch"]
    enc, payload = train_stage.load_checkpoint(repo.structure_model("gat"))
    assert payload["gdm"] == "gat" and payload["summary"]["best_epoch"] == best["epoch"]
    assert enc.config["hidden"] == 4 and not enc.training
    with sqlite3.connect(repo.root / "mlflow.db") as con:
        names = {r[0] for r in con.execute("select name from runs")}
        metrics = {r[0] for r in con.execute("select key from metrics")}
    assert "train_structure@gat" in names
    assert {"train_loss", "val_loss", "val_residue_type_acc", "val_angle_acc", "val_distance_mae"} <= metrics


def test_training_is_deterministic(structures):
    cfg = _params(epochs=1).structure

    def once(seed: int):
        torch.manual_seed(seed)
        enc = registry.build("gat", cfg)
        train_stage.pretrain(
            enc, _samples(structures, TRAIN[:3], enc), [], dataclasses.replace(cfg.train, seed=seed)
        )
        return enc.state_dict()

    a, b, c = once(0), once(0), once(1)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)


def test_training_reduces_loss(structures):
    cfg = _params(epochs=10, lr=0.02, mask_rate=0.3, batch_size=2, max_residues=512).structure
    torch.manual_seed(0)
    enc = registry.build("gat", cfg)
    summary = train_stage.pretrain(enc, _samples(structures, TRAIN[:4], enc), [], cfg.train)
    losses = [h["train_loss"] for h in summary["history"]]
    assert summary["selection"] == "train_loss"
    assert min(losses[-3:]) < losses[0] - 0.05, losses


def test_embed_writes_every_protein_and_records_skips(trained):
    repo, _ = trained
    params = _params()
    result = embed_stage.run(params, repo, "gat")
    emb = load_embeddings(repo.structure_embeddings("gat"))
    store = StructureStore(repo.structures)
    assert emb.ids == sorted(TRAIN + VAL) and result["n"] == 8
    assert emb.vectors.shape == (8, 16)  # meanmax of 4 x 2 heads
    assert [s["id"] for s in emb.meta["skipped"]] == ["ZBAD"] and "non-finite" in emb.meta["skipped"][0][
        "reason"
    ]
    assert (
        emb.meta["model"] == "gat"
        and emb.meta["pooling"] == "meanmax"
        and len(emb.meta["model_sha256"]) == 64
    )
    strict = dataclasses.replace(params, prepare=dataclasses.replace(params.prepare, max_skipped_fraction=0.1))
    with pytest.raises(UserError, match=r"embed_structure@gat: skipped 1 of 9 entries .*non-finite"):
        embed_stage.run(strict, repo, "gat")  # 1 of 9 = 11% > 10%
    # the stored vector is the model's embedding of that protein alone
    enc, _ = train_stage.load_checkpoint(repo.structure_model("gat"))
    enc.pooling = "meanmax"
    with torch.inference_mode():
        alone = enc.embed(enc.collate([enc.featurize(store.get("161L"))]))[0].numpy()
    np.testing.assert_allclose(emb.subset(["161L"])[0], alone, atol=1e-5)


def test_embed_needs_a_model(tmp_path, structures):
    with pytest.raises(FileNotFoundError, match="train_structure@gat"):
        embed_stage.run(_params(), _make_repo(tmp_path, structures), "gat")


def test_embed_with_worker_processes_equals_one_process(trained):
    """structure.threads: 2 embeds in 2 single-thread processes: same ids, bit-identical vectors, same skips."""
    repo, _ = trained
    one = _params()
    two = dataclasses.replace(one, structure=dataclasses.replace(one.structure, threads=2))
    threads = torch.get_num_threads()
    try:
        embed_stage.run(one, repo, "gat")
        a = load_embeddings(repo.structure_embeddings("gat"))
        result = embed_stage.run(two, repo, "gat")
        b = load_embeddings(repo.structure_embeddings("gat"))
    finally:
        torch.set_num_threads(threads)
    assert result["n"] == 8 and b.ids == a.ids == sorted(TRAIN + VAL)
    assert np.array_equal(a.vectors, b.vectors)
    assert b.meta["skipped"] == a.meta["skipped"] and [s["id"] for s in b.meta["skipped"]] == ["ZBAD"]


def test_embed_samples_workers_keep_batches_and_skips(structures):
    """Several batches over 2 workers (lazy input): same vectors and skip reasons as in-process."""
    torch.manual_seed(0)
    enc = registry.build("gat", _params().structure).eval()
    ids = sorted(TRAIN + VAL)
    samples = [enc.featurize(structures[i]) for i in ids]
    limit = max(enc.estimate_bytes(s) for s in samples) / 2**30 * 0.999  # the largest protein is skipped
    ref, ref_skip = embed_stage.embed_samples(enc, samples, batch_size=2, max_gb=limit)
    threads = torch.get_num_threads()
    try:
        got, got_skip = embed_stage.embed_samples(
            enc, iter(samples), batch_size=2, max_gb=limit, workers=2, total=len(samples)
        )
    finally:
        torch.set_num_threads(threads)
    assert len(ref) == len(ids) - 1 and len(ref_skip) == 1 and "too large" in ref_skip[0]["reason"]
    assert got_skip == ref_skip and sorted(got) == sorted(ref)
    assert all(np.array_equal(got[k], ref[k]) for k in ref)
