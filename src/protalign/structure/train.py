"""`train_structure@<gdm>`: self-supervised pretraining of a GDM by masked residue-type prediction.

Only the split's `train` proteins are trained on; `val` picks the best epoch (never `test`). Each step takes a
random contiguous crop of at most `max_residues` residues per protein (speed, bounded memory), hides the type of
`mask_rate` of the residues and predicts it from the encoder's per-residue output with a linear head.
Deterministic given `structure.train.seed`: one seed for the weights and dropout, seeded generators for the
order, crops and masks; validation uses the same crops and masks every epoch so epochs are comparable.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import time
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from protalign.storage import atomic_path, read_json
from protalign.structure import registry
from protalign.structure.registry import Sample, StructureEncoder
from protalign.tracking import mlflow_run

log = logging.getLogger(__name__)
N_CLASSES = 20  # targets are the 20 standard types; unknown residues are never targets
CHECKPOINT_FORMAT = 1


def _open_store(paths):
    """The packed structures written by `prepare` (imported lazily: tests may substitute a store)."""
    from protalign.corpus.store import StructureStore

    return StructureStore(paths.structures)


def featurize_many(
    encoder: StructureEncoder, store, ids: list[str], desc: str
) -> tuple[list[Sample], list[dict]]:
    """Featurize `ids`; a protein that fails is returned in the skip list with its reason, never dropped silently."""
    samples, skipped = [], []
    for pid in tqdm(ids, desc=desc, disable=None, leave=False):
        try:
            samples.append(encoder.featurize(store.get(pid)))
        except (ValueError, RuntimeError, IndexError) as exc:
            skipped.append({"id": pid, "reason": f"{type(exc).__name__}: {exc}"})
    return samples, skipped


def _crop(encoder: StructureEncoder, sample: Sample, max_residues: int, gen: torch.Generator) -> Sample:
    n = sample["num_nodes"]
    if n <= max_residues:
        return sample
    start = int(torch.randint(0, n - max_residues + 1, (1,), generator=gen))
    return encoder.crop(sample, start, start + max_residues)


def _type_mask(aa: torch.Tensor, rate: float, gen: torch.Generator) -> torch.Tensor:
    """Bernoulli(rate) over residues with a standard type; at least one residue per batch."""
    eligible = aa < N_CLASSES
    mask = (torch.rand(aa.shape, generator=gen) < rate) & eligible
    if not mask.any() and eligible.any():
        candidates = eligible.nonzero().flatten()
        mask[candidates[int(torch.randint(0, len(candidates), (1,), generator=gen))]] = True
    return mask


def masked_type_loss(
    encoder: StructureEncoder, head: nn.Module, samples: list[Sample], cfg, gen: torch.Generator
) -> tuple[torch.Tensor, int, int]:
    """Cross-entropy of predicting hidden residue types; returns (mean loss, n correct, n masked)."""
    batch = encoder.collate([_crop(encoder, s, cfg.max_residues, gen) for s in samples])
    mask = _type_mask(batch["aa"], cfg.mask_rate, gen)
    if not mask.any():
        return torch.zeros((), requires_grad=True), 0, 0
    logits = head(encoder(batch, type_mask=mask)[mask])
    target = batch["aa"][mask]
    loss = F.cross_entropy(logits, target)
    return loss, int((logits.argmax(1) == target).sum()), int(mask.sum())


def _batches(n: int, size: int, gen: torch.Generator | None) -> list[list[int]]:
    order = torch.randperm(n, generator=gen).tolist() if gen is not None else list(range(n))
    return [order[i : i + size] for i in range(0, n, size)]


def evaluate(encoder, head, samples: list[Sample], cfg, seed: int) -> tuple[float, float]:
    """Validation (loss, accuracy) with fixed crops and masks (same `seed` → same residues every epoch)."""
    encoder.eval()
    head.eval()
    gen = torch.Generator().manual_seed(seed)
    total, correct, count = 0.0, 0, 0
    with torch.inference_mode():
        for idx in _batches(len(samples), cfg.batch_size, None):
            loss, c, m = masked_type_loss(encoder, head, [samples[i] for i in idx], cfg, gen)
            total += float(loss) * m
            correct += c
            count += m
    return (total / count, correct / count) if count else (float("nan"), float("nan"))


def pretrain(
    encoder: StructureEncoder, train: list[Sample], val: list[Sample], cfg, tracker=None
) -> dict[str, Any]:
    """Train `encoder` in place; it ends holding the best epoch's weights. Returns the training summary."""
    if not train:
        raise ValueError("no trainable proteins in the train split")
    head = nn.Linear(encoder.node_dim, N_CLASSES)
    opt = torch.optim.Adam([*encoder.parameters(), *head.parameters()], lr=cfg.lr)
    gen = torch.Generator().manual_seed(cfg.seed)
    selection = "val_loss" if val else "train_loss"  # no val proteins: fall back, and say so in the summary
    best: dict[str, Any] = {"score": float("inf")}
    history = []
    bar = tqdm(range(1, cfg.epochs + 1), desc="train_structure", disable=None)
    for epoch in bar:
        encoder.train()
        head.train()
        t0, total, correct, count = time.perf_counter(), 0.0, 0, 0
        for idx in _batches(len(train), cfg.batch_size, gen):
            loss, c, m = masked_type_loss(encoder, head, [train[i] for i in idx], cfg, gen)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total, correct, count = total + loss.item() * m, correct + c, count + m
        row = {"epoch": epoch, "train_loss": total / max(count, 1), "train_acc": correct / max(count, 1)}
        if val:
            row["val_loss"], row["val_acc"] = evaluate(encoder, head, val, cfg, seed=cfg.seed + 1)
        row["seconds"] = time.perf_counter() - t0
        history.append(row)
        if tracker is not None:
            tracker.log_metrics({k: v for k, v in row.items() if k != "epoch"}, step=epoch)
        bar.set_postfix({k: round(v, 3) for k, v in row.items() if k.endswith(("loss", "acc"))})
        score = row[selection]
        if score < best["score"]:  # strict: ties keep the earlier epoch
            best = {
                "score": score,
                "epoch": epoch,
                "encoder": {k: v.detach().clone() for k, v in encoder.state_dict().items()},
                "head": {k: v.detach().clone() for k, v in head.state_dict().items()},
            }
    if "encoder" not in best:
        raise RuntimeError(f"training produced no finite {selection}; history: {history}")
    encoder.load_state_dict(best["encoder"])
    return {
        "best_epoch": best["epoch"],
        "selection": selection,
        "best_score": best["score"],
        "history": history,
        "n_train": len(train),
        "n_val": len(val),
        "head_state_dict": best["head"],
    }


def _flat(prefix: str, obj: Any) -> dict[str, Any]:
    if dataclasses.is_dataclass(obj):
        obj = dataclasses.asdict(obj)
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for k, v in obj.items():
            out.update(_flat(f"{prefix}.{k}" if prefix else k, v))
        return out
    return {prefix: list(obj) if isinstance(obj, tuple) else obj}


def save_checkpoint(path, encoder: StructureEncoder, gdm: str, summary: dict[str, Any]) -> None:
    """Atomic torch file: weights + config to rebuild + training summary (and the pretraining head)."""
    summary = dict(summary)
    head = summary.pop("head_state_dict", None)
    payload = {
        "format": CHECKPOINT_FORMAT,
        "gdm": gdm,
        "encoder": encoder.name,
        "config": encoder.config,
        "state_dict": encoder.state_dict(),
        "head_state_dict": head,
        "summary": summary,
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_checkpoint(path) -> tuple[StructureEncoder, dict[str, Any]]:
    """Rebuild the trained encoder (eval mode) from `models/structure/<gdm>.pt`; returns (encoder, payload)."""
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: unsupported checkpoint format {payload.get('format')!r}")
    encoder = registry.from_config(payload["encoder"], payload["config"])
    encoder.load_state_dict(payload["state_dict"])
    return encoder.eval(), payload


def file_sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def set_threads(params) -> None:
    """Torch CPU threads for structure stages (small graphs: 1 thread is fastest and avoids oversubscription)."""
    threads = int(params.structure.threads)
    if threads > 0:
        torch.set_num_threads(threads)


def run(params, paths, gdm: str) -> dict[str, Any]:
    """Stage entry: pretrain `gdm` on the train split, select on val, save `models/structure/<gdm>.pt`."""
    cfg = params.structure.train
    set_threads(params)
    split = read_json(paths.split)
    store = _open_store(paths)
    torch.manual_seed(cfg.seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    encoder = registry.build(gdm, params.structure)
    train, skip_train = featurize_many(encoder, store, list(split["train"]), "featurize train")
    val, skip_val = featurize_many(encoder, store, list(split["val"]), "featurize val")
    for s in skip_train + skip_val:
        log.warning("train_structure@%s: skipped %s (%s)", gdm, s["id"], s["reason"])
    t0 = time.perf_counter()
    mlflow_params = {"gdm": gdm, **_flat("structure", params.structure)}
    with mlflow_run(paths, stage="train_structure", item=gdm, params=mlflow_params) as tracker:
        summary = pretrain(encoder, train, val, cfg, tracker)
        summary["seconds"] = time.perf_counter() - t0
        summary["skipped"] = skip_train + skip_val
        tracker.log_metrics({"best_epoch": summary["best_epoch"], "best_score": summary["best_score"]})
    save_checkpoint(paths.structure_model(gdm), encoder, gdm, summary)
    return {k: v for k, v in summary.items() if k != "head_state_dict"}
