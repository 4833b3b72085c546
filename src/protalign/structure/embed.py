"""`embed_structure@<gdm>`: one vector per protein for EVERY protein in the store (all splits).

The trained encoder (models/structure/<gdm>.pt) is rebuilt from its stored config, so the graph settings match
training; the readout is `params.structure.pooling` (pretraining does not depend on it). Proteins are embedded
whole (no crop, no residue dropped); one the model cannot embed, or whose estimated forward memory exceeds
`structure.max_embed_gb`, is listed in meta["skipped"] with the reason (the run goes on). `structure.device`
picks cpu / cuda / auto.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from protalign.storage import EmbeddingSet, save_embeddings
from protalign.structure.registry import POOLINGS, Sample, StructureEncoder, resolve_device, to_device
from protalign.structure.train import _open_store, file_sha256, load_checkpoint, set_threads

log = logging.getLogger(__name__)
MAX_BATCH_RESIDUES = 20_000  # residues per forward pass (bounds memory with large complexes)


def _chunks(samples: list[Sample], max_proteins: int, max_residues: int) -> list[list[Sample]]:
    out: list[list[Sample]] = []
    cur: list[Sample] = []
    size = 0
    for s in samples:
        if cur and (len(cur) >= max_proteins or size + s["num_nodes"] > max_residues):
            out.append(cur)
            cur, size = [], 0
        cur.append(s)
        size += s["num_nodes"]
    if cur:
        out.append(cur)
    return out


def embed_samples(
    encoder: StructureEncoder,
    samples: list[Sample],
    batch_size: int,
    device: torch.device | str = "cpu",
    max_gb: float | None = None,
) -> tuple[dict[str, np.ndarray], list[dict]]:
    """Embeddings by id, whole proteins (never cropped); a batch that fails is retried protein by protein so one
    bad protein skips alone; a protein whose estimated forward memory exceeds `max_gb` is skipped with the reason."""
    vectors: dict[str, np.ndarray] = {}
    skipped: list[dict] = []
    if max_gb is not None:
        fits = []
        for s in samples:
            need = encoder.estimate_bytes(s) / 2**30
            if need > max_gb:
                skipped.append(
                    {
                        "id": s["id"],
                        "reason": f"too large: ~{need:.1f} GB estimated forward memory > "
                        f"structure.max_embed_gb {max_gb} ({s['num_nodes']} residues)",
                    }  # fmt: skip
                )
            else:
                fits.append(s)
        samples = fits
    encoder.eval().to(device)

    def _embed(group: list[Sample]) -> torch.Tensor:
        return encoder.embed(to_device(encoder.collate(group), device)).float().cpu()

    with torch.inference_mode():
        for chunk in tqdm(
            _chunks(samples, batch_size, MAX_BATCH_RESIDUES), desc="embed_structure", disable=None
        ):
            try:
                groups = [(chunk, _embed(chunk))]
            except (RuntimeError, ValueError, IndexError):
                groups = []
                for s in chunk:
                    try:
                        groups.append(([s], _embed([s])))
                    except (RuntimeError, ValueError, IndexError) as exc:
                        skipped.append(
                            {"id": s["id"], "reason": f"forward failed: {type(exc).__name__}: {exc}"}
                        )
            for members, emb in groups:
                for s, v in zip(members, emb.numpy(), strict=True):
                    if np.isfinite(v).all():
                        vectors[s["id"]] = v.astype(np.float32)
                    else:
                        skipped.append({"id": s["id"], "reason": "non-finite embedding"})
    return vectors, skipped


def run(params, paths, gdm: str) -> dict[str, Any]:
    """Stage entry: embed all proteins of the store with the trained `gdm`; write embeddings/structure/<gdm>/."""
    set_threads(params)
    model_path = paths.structure_model(gdm)
    if not model_path.exists():
        raise FileNotFoundError(f"{model_path} not found (has train_structure@{gdm} run?)")
    encoder, payload = load_checkpoint(model_path)
    pooling = params.structure.pooling
    if pooling not in POOLINGS:
        raise ValueError(f"structure.pooling must be one of {POOLINGS}, got {pooling!r}")
    encoder.pooling = pooling
    torch.manual_seed(params.structure.train.seed)  # eval mode is deterministic; seeded anyway
    store = _open_store(paths)
    ids = list(store.ids)
    samples: list[Sample] = []
    skipped: list[dict] = []
    for pid in tqdm(ids, desc="featurize", disable=None, leave=False):
        try:
            samples.append(encoder.featurize(store.get(pid)))
        except (ValueError, RuntimeError, IndexError, KeyError) as exc:
            skipped.append({"id": pid, "reason": f"featurize failed: {type(exc).__name__}: {exc}"})
    device = resolve_device(params.structure.device)
    vectors, failed = embed_samples(
        encoder, samples, params.structure.train.batch_size, device, params.structure.max_embed_gb
    )
    skipped += failed
    for s in skipped:
        log.warning("embed_structure@%s: skipped %s (%s)", gdm, s["id"], s["reason"])
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
    return {"n": len(kept), "n_skipped": len(skipped), "dim": int(array.shape[1])}
