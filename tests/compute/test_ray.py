"""`compute.engine: ray` on a real 2-node local cluster: the corpus-sized stages give byte-identical outputs at two
shard sizes, survive a killed worker without recording a shard twice, and an unreachable address fails fast."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from params_helpers import default_params
from protalign import compute
from protalign.analysis import cv
from protalign.compute.ray_engine import ComputeError, runtime_env
from protalign.corpus import prepare
from protalign.paths import Paths
from protalign.storage import write_json
from protalign.structure import embed as structure_embed
from protalign.structure import train as structure_train
from protalign.text import embed as text_embed

ENTRIES = ["1A8O", "1AAY", "1AB1", "1AFO", "1AHO", "1BEN", "1A7G"]  # six PDB files and one mmCIF
SHARD_SIZES = (2, 3)
GAT = {"hidden": 4, "heads": 2, "layers": 2, "dropout": 0.1}
TRAIN = {"epochs": 1, "batch_size": 3, "max_residues": 96, "seed": 0}


def _params(engine: str = "local", shard_size: int = 2, address: str | None = None):
    return default_params(
        prepare={"workers": 1},
        structure={"gat": GAT, "gdms": ["gat"], "threads": 1, "train": TRAIN},
        embed_text={"threads": 1, "batch_size": 2},
        compute={"engine": engine, "shard_size": shard_size, "threads": 1, "ray": {"address": address}},
    )


def _digest(directory: Path) -> dict[str, str]:
    return {
        str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def _data(shared: Path, data: Path) -> None:
    (data / "structures").mkdir(parents=True)
    (data / "fasta").mkdir()
    lines = []
    for entry in ENTRIES:
        src = next((shared / "structures").glob(f"{entry}.*"))
        shutil.copy(src, data / "structures" / src.name)
        shutil.copy(shared / "fasta" / f"{entry}.fasta", data / "fasta" / f"{entry}.fasta")
        lines.append(f"{entry}\tstructures/{src.name}\tfasta/{entry}.fasta\t\tshared")
    (data / "structures" / "9BAD.pdb").write_text("HEADER    NOT REALLY A STRUCTURE\nEND\n")
    lines.append("9BAD\tstructures/9BAD.pdb\t\tpdb\tmade-up")
    (data / "manifest.tsv").write_text("id\tstructure_file\tfasta_file\tformat\tsource\n" + "\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def repo(tmp_path_factory, shared_data):
    """A scratch repository with data/, prepared by the local engine, a 1-epoch GAT and summaries."""
    root = tmp_path_factory.mktemp("repo")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PROTALIGN_MAIN_ROOT", str(root))
        mp.setenv("PROTALIGN_CACHE", str(root / ".protalign-cache"))
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        mp.delenv("DVC_EXP_NAME", raising=False)
        _data(shared_data, root / "data")
        paths = Paths(root)
        prepare.run(_params(), paths)
        ids = sorted(pd.read_parquet(paths.proteins)["id"])
        write_json(paths.split, {"method": "random", "seed": 0, "fractions": [0.6, 0.2, 0.2],
                                 "train": ids[:4], "val": ids[4:6], "test": ids[6:]})  # fmt: skip
        structure_train.run(_params(), paths, "gat")
        frame = pd.read_parquet(paths.proteins)
        texts = [f"{t}. Molecules: {', '.join(m)}." for t, m in zip(frame["title"], frame["molecule_names"], strict=True)]
        pd.DataFrame({"id": frame["id"], "text": texts}).to_parquet(paths.summaries, index=False)
        yield paths


def _timed(fn, *args):
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def test_stages_on_ray_equal_local_bytes_at_two_shard_sizes(repo, ray_cluster, shared_data, tmp_path):
    times: dict[str, list[float]] = {}
    # prepare: a fresh root per run (the store is written once per root)
    local_prepared = _digest(repo.prepared / "structures") | {"proteins": _digest(repo.prepared)["proteins.parquet"]}
    _data(shared_data, tmp_path / "prep-local" / "data")
    times["prepare"] = [_timed(prepare.run, _params(), Paths(tmp_path / "prep-local"))]
    for size in SHARD_SIZES:
        root = tmp_path / f"prep-{size}"
        _data(shared_data, root / "data")
        other = Paths(root)
        times.setdefault("prepare", []).append(_timed(prepare.run, _params("ray", size, ray_cluster.address), other))
        got = _digest(other.prepared / "structures") | {"proteins": _digest(other.prepared)["proteins.parquet"]}
        assert got == local_prepared, f"prepare on ray (shard_size {size}) differs from local"
        assert (other.skipped.read_bytes() == repo.skipped.read_bytes())
    for stage, run, arg, out in (
        ("embed_structure", structure_embed.run, "gat", repo.structure_embeddings("gat")),
        ("embed_text", text_embed.run, "minilm-l6", repo.text_embeddings("minilm-l6")),
    ):
        local_time = _timed(run, _params(), repo, arg)
        local = _digest(out)
        for size in SHARD_SIZES:
            times.setdefault(stage, []).append(_timed(run, _params("ray", size, ray_cluster.address), repo, arg))
            assert _digest(out) == local, f"{stage} on ray (shard_size {size}) differs from local"
        times[stage].insert(0, local_time)
    print(f"\nwall s [local, ray@{SHARD_SIZES}]: {json.dumps(times)}")


def _fold_jobs(n_jobs: int = 4):
    p = _params()
    align = dataclasses.replace(p.align, epochs=2, batch_size=8, dim=8)
    rng = np.random.default_rng(0)
    text, structure = rng.normal(size=(24, 12)).astype(np.float32), rng.normal(size=(24, 6)).astype(np.float32)
    jobs = []
    for k in range(n_jobs):
        test = np.zeros(24, bool)
        test[k * 6 : (k + 1) * 6] = True
        val = np.roll(test, 6)
        config = cv.head_config(dataclasses.replace(align, seed=k), 12, 6)
        jobs.append(cv._FoldJob(text, structure, ~(test | val), val, {"cluster": test}, config,
                                dataclasses.replace(align, seed=k), control=k % 2 == 1))  # real and control fits
    return jobs


def test_crossval_fits_on_ray_equal_local(ray_cluster):
    jobs = _fold_jobs()
    compute.engine_for(_params())
    local = cv._map(cv._fit_fold, jobs, 1)
    compute.engine_for(_params("ray", 2, ray_cluster.address))
    try:
        remote = cv._map(cv._fit_fold, jobs, 1)
    finally:
        compute.engine_for(_params())
    assert len(remote) == len(local)
    for a, b in zip(local, remote, strict=True):
        assert a.keys() == b.keys()
        for method in a:
            assert a[method].keys() == b[method].keys()
            for key in a[method]:
                assert np.asarray(a[method][key]).tobytes() == np.asarray(b[method][key]).tobytes(), (method, key)


def test_killed_worker_mid_stage_finishes_with_each_id_recorded_once(repo, ray_cluster):
    local_out = repo.text_embeddings("minilm-l6")
    text_embed.run(_params(), repo, "minilm-l6")
    local = _digest(local_out)
    for old in (repo.cache / "embed_text").glob("*.ledger.jsonl"):
        old.unlink()
    errors: list[BaseException] = []

    def _stage():
        try:
            text_embed.run(_params("ray", 1, ray_cluster.address), repo, "minilm-l6")
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test thread
            errors.append(exc)

    thread = threading.Thread(target=_stage)
    thread.start()
    killed = None
    try:
        deadline = time.monotonic() + 120
        while killed is None and thread.is_alive() and time.monotonic() < deadline:
            actors = ray_cluster.pids("ray::_ShardActor")  # a model-holding worker of this stage
            if actors:
                killed = actors[0]
                os.kill(killed, signal.SIGKILL)
            time.sleep(0.05)
    finally:
        thread.join(300)  # never leave the stage running past the test (it would outlive the cluster)
    assert killed is not None, "the stage ended before a worker was killed"
    assert not errors, errors
    assert _digest(local_out) == local
    records = [json.loads(line) for f in (repo.cache / "embed_text").glob("*.ledger.jsonl")
               for line in f.read_text().splitlines()]  # fmt: skip
    ids = [i for r in records for i in r["ids"]]
    assert sorted(ids) == sorted(set(ids)) == sorted(pd.read_parquet(repo.summaries)["id"])
    assert len({r["shard"] for r in records}) == len(records)


def test_unreachable_address_fails_fast_naming_it():
    from ray_local_cluster import free_port

    address = f"127.0.0.1:{free_port()}"
    start = time.monotonic()
    with pytest.raises(ComputeError, match=address):
        compute.engine_for(_params("ray", 2, address))
    assert time.monotonic() - start < 30


def test_runtime_env_carries_no_secret(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_secret_value")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    env = runtime_env(2)["env_vars"]
    assert env["OMP_NUM_THREADS"] == "2" and env["HF_HUB_OFFLINE"] == "1"
    assert not {"HF_TOKEN", "OPENAI_API_KEY"} & set(env) and "hf_secret_value" not in env.values()
    monkeypatch.setenv("HF_HOME", "sk-secret")  # a secret's value copied into an allowed name is refused too
    with pytest.raises(ComputeError, match="HF_HOME"):
        runtime_env(2)


def test_ledger_resume_recomputes_nothing_finished(tmp_path):
    calls: list[str] = []

    def work(_state, payload):
        calls.append(payload)
        return payload.upper()

    shards = [(s.name, list(s.ids), ",".join(s.ids)) for s in compute.cut(["b", "a", "d", "c", "e"], 2)]
    ledger = compute.ShardLedger(tmp_path)
    assert list(compute.LocalEngine().map_shards(work, shards[:2], ledger=ledger)) == ["A,B", "C,D"]
    again = compute.ShardLedger(tmp_path)  # a new run after an interruption
    assert list(compute.LocalEngine().map_shards(work, shards, ledger=again)) == ["A,B", "C,D", "E"]
    assert calls == ["a,b", "c,d", "e"]
    assert [r["shard"] for r in map(json.loads, (tmp_path / "ledger.jsonl").read_text().splitlines())] == [
        "shard-000000", "shard-000001", "shard-000002"]  # fmt: skip


def test_user_folder_embed_on_ray_equals_local(repo, ray_cluster):
    """`protalign embed`'s two corpus-sized steps: parsing the user's files and the GDM forward."""
    from protalign.structure.train import load_checkpoint
    from protalign.use import embed as use_embed

    files = sorted((repo.data / "structures").iterdir())
    out = {}
    for name, params in (("local", _params()), ("ray", _params("ray", 3, ray_cluster.address))):
        rows, structures, failures = use_embed.parse_files(files, params)
        encoder, _ = load_checkpoint(repo.structure_model("gat"))
        encoder.pooling = params.structure.pooling
        ids, array, failed = use_embed.encode_structures(encoder, structures, params)
        out[name] = (repr(rows), [s.ca.tobytes() for s in structures], failures, ids, array.tobytes(), failed)
    compute.engine_for(_params())
    assert out["ray"] == out["local"]
    assert len(out["local"][3]) == len(ENTRIES) and [f["id"] for f in out["local"][2]] == ["9BAD"]
