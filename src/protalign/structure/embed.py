"""`embed_structure@<gdm>`: one vector per protein for EVERY protein in the store (all splits).

The trained encoder (models/structure/<gdm>.pt) is rebuilt from its stored config, so the graph settings match
training; the readout is `params.structure.pooling` (pretraining does not depend on it). Proteins are embedded
whole (no crop, no residue dropped); one the model cannot embed, or whose estimated forward memory exceeds
`structure.max_embed_gb`, is listed in meta["skipped"] with the reason (the run goes on). `structure.device`
picks cpu / cuda / auto.

On the CPU, `structure.threads` = N > 1 embeds with N worker processes of one torch thread each (spawn): the main
process featurizes and cuts the proteins into the same batches as one process would, the workers embed whole
batches, and every vector is bit-identical to `threads: 1` (proteins are independent, one thread per batch both
ways). Unlike intra-op threads, single-thread workers do not stall when other jobs share the cores.
"""

from __future__ import annotations

import collections
import logging
import multiprocessing
import shutil
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from protalign import compute
from protalign.compute.shards import ShardLedger, group
from protalign.devices import resolve_device
from protalign.errors import MissingArtifactError, check_losses
from protalign.params import Params
from protalign.paths import Paths
from protalign.storage import EmbeddingSet, file_sha256, save_embeddings
from protalign.structure.registry import POOLINGS, Sample, StructureEncoder, to_device
from protalign.structure.train import load_checkpoint, open_store, set_threads

log = logging.getLogger(__name__)
MAX_BATCH_RESIDUES = 20_000  # residues per forward pass (bounds memory with large complexes)


def sample_chunks(samples: Iterable[Sample], max_proteins: int, max_residues: int) -> Iterator[list[Sample]]:
    """Consecutive batches of at most `max_proteins` samples and `max_residues` residues (a larger protein alone)."""
    cur: list[Sample] = []
    size = 0
    for s in samples:
        if cur and (len(cur) >= max_proteins or size + s["num_nodes"] > max_residues):
            yield cur
            cur, size = [], 0
        cur.append(s)
        size += s["num_nodes"]
    if cur:
        yield cur


def _fits(encoder: StructureEncoder, samples: Iterable[Sample], max_gb: float | None, skipped: list[dict]):
    """`samples` without those whose estimated forward memory exceeds `max_gb` (appended to `skipped`)."""
    for s in samples:
        need = encoder.estimate_bytes(s) / 2**30 if max_gb is not None else 0.0
        if max_gb is not None and need > max_gb:
            skipped.append(
                {
                    "id": s["id"],
                    "reason": f"too large: ~{need:.1f} GB estimated forward memory > "
                    f"structure.max_embed_gb {max_gb} ({s['num_nodes']} residues)",
                }  # fmt: skip
            )
        else:
            yield s


def _embed_chunk(
    encoder: StructureEncoder, chunk: list[Sample], device
) -> tuple[list[tuple[str, np.ndarray]], list[dict]]:
    """(id, vector) pairs and skips of one batch; a batch that fails is retried protein by protein."""

    def _embed(group: list[Sample]) -> torch.Tensor:
        return encoder.embed(to_device(encoder.collate(group), device)).float().cpu()

    skipped: list[dict] = []
    with torch.inference_mode():
        try:
            groups = [(chunk, _embed(chunk))]
        except (RuntimeError, ValueError, IndexError):
            groups = []
            for s in chunk:
                try:
                    groups.append(([s], _embed([s])))
                except (RuntimeError, ValueError, IndexError) as exc:
                    skipped.append({"id": s["id"], "reason": f"forward failed: {type(exc).__name__}: {exc}"})
    out = []
    for members, emb in groups:
        for s, v in zip(members, emb.numpy(), strict=True):
            if np.isfinite(v).all():
                out.append((s["id"], v.astype(np.float32)))
            else:
                skipped.append({"id": s["id"], "reason": "non-finite embedding"})
    return out, skipped


_WORKER: dict[str, Any] = {}


def _worker_init(encoder: StructureEncoder) -> None:
    torch.set_num_threads(1)
    _WORKER["encoder"] = encoder.eval()


def _worker_chunk(chunk: list[Sample]) -> tuple[list[tuple[str, np.ndarray]], list[dict]]:
    return _embed_chunk(_WORKER["encoder"], chunk, "cpu")


def embed_samples(
    encoder: StructureEncoder,
    samples: Iterable[Sample],
    batch_size: int,
    device: torch.device | str = "cpu",
    max_gb: float | None = None,
    workers: int = 1,
    total: int | None = None,
) -> tuple[dict[str, np.ndarray], list[dict]]:
    """Embeddings by id, whole proteins (never cropped); a batch that fails is retried protein by protein so one
    bad protein skips alone; a protein whose estimated forward memory exceeds `max_gb` is skipped with the reason.

    `samples` may be a lazy iterable (featurized while earlier batches embed). `workers` > 1 (CPU only) embeds the
    batches in that many single-thread processes; batches and results are the same as with one process.
    `total` (proteins) sizes the progress bar when `samples` has no len().
    """
    vectors: dict[str, np.ndarray] = {}
    skipped: list[dict] = []
    encoder.eval().to(device)
    if total is None and hasattr(samples, "__len__"):
        total = len(samples)  # type: ignore[arg-type]
    chunks = sample_chunks(_fits(encoder, samples, max_gb, skipped), batch_size, MAX_BATCH_RESIDUES)
    bar = tqdm(total=total, desc="embed_structure", unit="protein", disable=None)

    def _collect(result, n: int) -> None:
        pairs, failed = result
        vectors.update(pairs)
        skipped.extend(failed)
        bar.update(n)

    try:
        if workers <= 1 or torch.device(device).type != "cpu":
            for chunk in chunks:
                _collect(_embed_chunk(encoder, chunk, device), len(chunk))
            return vectors, skipped
        ctx = multiprocessing.get_context("spawn")
        pending: collections.deque[tuple[Future, int]] = collections.deque()
        try:
            pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_worker_init, initargs=(encoder,))
            with pool:
                # featurized lazily here while the workers embed earlier batches; at most 2 per worker in flight
                for chunk in chunks:
                    pending.append((pool.submit(_worker_chunk, chunk), len(chunk)))
                    while len(pending) > 2 * workers:
                        future, n = pending.popleft()
                        _collect(future.result(), n)
                while pending:
                    future, n = pending.popleft()
                    _collect(future.result(), n)
        except BrokenProcessPool as exc:
            raise RuntimeError(
                f"an embed_structure worker process died ({exc}); out of memory? try structure.threads: 1 "
                "or a lower structure.max_embed_gb"
            ) from exc
    finally:
        bar.close()
    return vectors, skipped


def _actor_encoder(encoder: StructureEncoder, device_name: str) -> tuple[StructureEncoder, torch.device]:
    """Ray actor setup: the encoder (shipped once through the object store) on the actor's device."""
    device = resolve_device(device_name, "structure.device")
    return encoder.eval().to(device), device


def _embed_shard(state, chunks: list[list[Sample]]) -> list[tuple[list[tuple[str, np.ndarray]], list[dict]]]:
    encoder, device = state
    return [_embed_chunk(encoder, chunk, device) for chunk in chunks]


def embed_sharded(
    engine: compute.Engine, encoder: StructureEncoder, samples: Iterable[Sample], batch_size: int,
    device_name: str, max_gb: float | None, shard_size: int, ledger: ShardLedger | None,
) -> tuple[dict[str, np.ndarray], list[dict]]:
    """`embed_samples` on an engine: the driver featurizes and cuts the same batches as one process would; shards
    are runs of whole batches (~shard_size proteins) sent to encoder actors, so every vector is the same."""
    skipped: list[dict] = []
    chunks = sample_chunks(_fits(encoder, samples, max_gb, skipped), batch_size, MAX_BATCH_RESIDUES)
    shards = (
        (f"shard-{k:06d}", [s["id"] for c in g for s in c], g) for k, g in enumerate(group(chunks, len, shard_size))
    )
    vectors: dict[str, np.ndarray] = {}
    setup_args = (encoder.cpu(), device_name)
    for result in engine.map_shards(_embed_shard, shards, setup=_actor_encoder, setup_args=setup_args, ledger=ledger):
        for pairs, failed in result:
            vectors.update(pairs)
            skipped.extend(failed)
    return vectors, skipped


def run(params: Params, paths: Paths, gdm: str) -> dict[str, Any]:
    """Stage entry: embed all proteins of the store with the trained `gdm`; write embeddings/structure/<gdm>/."""
    set_threads(params)
    model_path = paths.structure_model(gdm)
    if not model_path.exists():
        raise MissingArtifactError(f"{model_path} not found (has train_structure@{gdm} run?)")
    encoder, payload = load_checkpoint(model_path)
    blind = not encoder.config.get("residue_types", True)
    if blind == bool(params.structure.residue_types):
        raise ValueError(
            f"{model_path} was made with structure.residue_types={not blind} but params say "
            f"{params.structure.residue_types}; rerun train_structure@{gdm} (dvc repro does)"
        )
    pooling = params.structure.pooling
    if pooling not in POOLINGS:
        raise ValueError(f"structure.pooling must be one of {POOLINGS}, got {pooling!r}")
    encoder.pooling = pooling
    torch.manual_seed(params.structure.train.seed)  # eval mode is deterministic; seeded anyway
    store = open_store(paths)
    ids = list(store.ids)
    skipped: list[dict] = []

    def _featurized() -> Iterator[Sample]:  # lazy: with workers, featurizing overlaps embedding
        for pid in ids:
            try:
                sample = encoder.featurize(encoder.input_structure(store.get(pid)))
            except (ValueError, RuntimeError, IndexError, KeyError) as exc:
                skipped.append({"id": pid, "reason": f"featurize failed: {type(exc).__name__}: {exc}"})
                continue
            yield sample

    device = resolve_device(params.structure.device, "structure.device")
    workers = max(1, int(params.structure.threads)) if device.type == "cpu" else 1
    if workers > 1:
        torch.set_num_threads(1)  # the main process only featurizes; 2 threads here would fight the workers
    engine = compute.engine_for(params)
    if engine.name == "local":
        vectors, failed = embed_samples(
            encoder, _featurized(), params.structure.train.batch_size, device, params.structure.max_embed_gb,
            workers=workers, total=len(ids),
        )  # fmt: skip
    else:
        key = compute.shards.content_key(
            file_sha256(model_path), pooling, params.structure.train.batch_size, params.structure.max_embed_gb, ids
        )
        shard_dir = paths.cache / "embed_structure" / f"{gdm}-{key}"
        ledger = ShardLedger(shard_dir / f"shards-{params.compute.shard_size}")
        vectors, failed = embed_sharded(
            engine, encoder, _featurized(), params.structure.train.batch_size, params.structure.device,
            params.structure.max_embed_gb, params.compute.shard_size, ledger,
        )  # fmt: skip
    skipped += failed
    for s in skipped:
        log.warning("embed_structure@%s: skipped %s (%s)", gdm, s["id"], s["reason"])
    limit = params.prepare.max_skipped_fraction
    check_losses(f"embed_structure@{gdm}", [s["reason"] for s in skipped], len(ids), limit)
    kept = [i for i in ids if i in vectors]
    array = np.stack([vectors[i] for i in kept]) if kept else np.zeros((0, encoder.dim), np.float32)
    meta = {
        "side": "structure",
        "model": gdm,
        "encoder": encoder.name,
        "pooling": pooling,
        "config": encoder.config,
        "model_sha256": file_sha256(model_path),
        "weights": payload["summary"].get("weights", "trained"),
        "trained_best_epoch": payload["summary"].get("best_epoch"),
        "skipped": sorted(skipped, key=lambda s: s["id"]),
        "n_skipped": len(skipped),
    }
    save_embeddings(paths.structure_embeddings(gdm), EmbeddingSet(ids=kept, vectors=array, meta=meta))
    if engine.name != "local":
        ShardLedger.keep_record(shard_dir)
        shutil.rmtree(shard_dir, ignore_errors=True)  # resume state is spent once the artifact exists
    return {"n": len(kept), "n_skipped": len(skipped), "dim": int(array.shape[1])}
