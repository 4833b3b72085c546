"""Pretraining objectives shared by every GDM (GearNet-pretraining spirit), on per-residue encoder outputs.

- residue_type: hide `mask_rate` of the residue types (the encoder's `type_mask`) and predict them (20 classes);
- distance: regress the Cα–Cα distance (in units of 10 Å, smooth L1) of random residue pairs of one protein
  from [h_i ‖ h_j]; unlike GearNet the pairs are not removed from the graph, but most random pairs are far beyond
  any edge, so the model must infer them from context;
- angle: classify the angle ∠(Cα_i, Cα_j, Cα_k) into 8 bins over [0, π] for random triples whose i and k are
  within 10 Å of the vertex j (GearNet's angle task samples adjacent edge pairs), from [h_i ‖ h_j ‖ h_k];
- ec: EC class (first `ec_level` digits) of the protein from its mean-pooled residue features; labels come from
  the train split only (val labels unseen in train are ignored).
All sampling uses the caller's seeded generator (CPU), so a run is reproducible.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

TASKS = ("residue_type", "distance", "angle", "ec")
log = logging.getLogger(__name__)
N_TYPES = 20  # targets are the 20 standard types; unknown residues are never targets
N_ANGLE_BINS = 8
NEIGHBOUR_RADIUS = 10.0
DISTANCE_SCALE = 10.0


def check_tasks(tasks) -> tuple[str, ...]:
    tasks = tuple(tasks)
    unknown = sorted(set(tasks) - set(TASKS))
    if unknown or not tasks:
        raise ValueError(f"structure.train.tasks must be a non-empty subset of {TASKS}, got {list(tasks)}")
    return tasks


def usable_tasks(tasks, residue_types: bool) -> tuple[str, ...]:
    """The pretraining tasks a run can train: without residue types (the sequence-blind ablation) the masked
    residue-type task has no targets, so it is dropped (logged); alone it leaves nothing to train, an error."""
    tasks = check_tasks(tasks)
    if residue_types or "residue_type" not in tasks:
        return tasks
    rest = tuple(t for t in tasks if t != "residue_type")
    if not rest:
        raise ValueError(
            "structure.residue_types is false (sequence-blind ablation), so the residue_type task has no targets "
            "and structure.train.tasks has no other task; add distance/angle/ec or set structure.<gdm>.weights: random"
        )
    log.info("structure.residue_types is false: dropping the residue_type pretraining task; training %s", list(rest))
    return rest


def ec_label(ec_numbers, level: int) -> str | None:
    """The first (sorted) EC number's first `level` fields if they are all digits ('3.2.1.-' → '3.2' at level 2)."""
    if level < 1 or level > 4:
        raise ValueError(f"structure.train.ec_level must be 1..4, got {level}")
    for ec in sorted(str(e) for e in (ec_numbers if ec_numbers is not None else [])):
        parts = ec.strip().split(".")
        if len(parts) >= level and all(p.isdigit() for p in parts[:level]):
            return ".".join(parts[:level])
    return None


def _mlp(d_in: int, d_hidden: int, d_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, d_hidden), nn.ReLU(), nn.Linear(d_hidden, d_out))


class PretrainHeads(nn.Module):
    """One small head per task on top of per-residue features of width `node_dim`."""

    def __init__(self, node_dim: int, tasks, n_ec: int = 0) -> None:
        super().__init__()
        self.tasks = check_tasks(tasks)
        hidden = min(node_dim, 256)
        if "residue_type" in self.tasks:
            self.residue_type = nn.Linear(node_dim, N_TYPES)
        if "distance" in self.tasks:
            self.distance = _mlp(2 * node_dim, hidden, 1)
        if "angle" in self.tasks:
            self.angle = _mlp(3 * node_dim, hidden, N_ANGLE_BINS)
        if "ec" in self.tasks:
            if n_ec < 2:
                raise ValueError(f"the ec task needs >= 2 EC classes in the train split, found {n_ec}")
            self.ec = _mlp(node_dim, hidden, n_ec)


def type_mask(aa: torch.Tensor, rate: float, gen: torch.Generator) -> torch.Tensor:
    """Bernoulli(rate) over residues with a standard type; at least one residue per batch."""
    eligible = aa < N_TYPES
    mask = (torch.rand(aa.shape, generator=gen) < rate) & eligible
    if not mask.any() and eligible.any():
        candidates = eligible.nonzero().flatten()
        mask[candidates[int(torch.randint(0, len(candidates), (1,), generator=gen))]] = True
    return mask


def sample_pairs(ptr: torch.Tensor, per_protein: int, gen: torch.Generator) -> torch.Tensor:
    """[2, P] global residue ids of random distinct pairs within each protein (proteins with < 2 residues: none)."""
    out = []
    for g in range(len(ptr) - 1):
        start, n = int(ptr[g]), int(ptr[g + 1] - ptr[g])
        if n < 2:
            continue
        i = torch.randint(0, n, (per_protein,), generator=gen)
        j = (i + torch.randint(1, n, (per_protein,), generator=gen)) % n
        out.append(torch.stack([i, j]) + start)
    return torch.cat(out, dim=1) if out else torch.empty(2, 0, dtype=torch.long)


def sample_triples(
    pos: torch.Tensor, ptr: torch.Tensor, per_protein: int, gen: torch.Generator
) -> torch.Tensor:
    """[3, T] (i, j, k): vertex j random among residues with >= 2 neighbours within 10 Å; i != k random neighbours."""
    out = []
    for g in range(len(ptr) - 1):
        start, stop = int(ptr[g]), int(ptr[g + 1])
        if stop - start < 3:
            continue
        p = pos[start:stop]
        near = torch.cdist(p, p) < NEIGHBOUR_RADIUS
        near.fill_diagonal_(False)
        vertices = (near.sum(1) >= 2).nonzero().flatten()
        if vertices.numel() == 0:
            continue
        j = vertices[torch.randint(0, vertices.numel(), (per_protein,), generator=gen)]
        score = torch.rand(j.numel(), stop - start, generator=gen).masked_fill(~near[j], -1.0)
        ik = score.topk(2, dim=1).indices
        out.append(torch.stack([ik[:, 0], j, ik[:, 1]]) + start)
    return torch.cat(out, dim=1) if out else torch.empty(3, 0, dtype=torch.long)


def angle_bins(pos: torch.Tensor, triples: torch.Tensor) -> torch.Tensor:
    a = pos[triples[0]] - pos[triples[1]]
    b = pos[triples[2]] - pos[triples[1]]
    cos = (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1)).clamp_min(1e-8)
    ang = torch.arccos(cos.clamp(-1.0, 1.0))
    return (ang / math.pi * N_ANGLE_BINS).long().clamp(0, N_ANGLE_BINS - 1)


def task_losses(
    encoder,
    heads: PretrainHeads,
    batch: dict[str, Any],
    aa: torch.Tensor,
    pos: torch.Tensor,
    ec: torch.Tensor,
    cfg,
    gen: torch.Generator,
) -> tuple[dict[str, torch.Tensor], dict[str, tuple[float, int]]]:
    """One forward, every task's loss; stats[task] = (sum of the task's quality measure, count) for logging.

    `aa` (store order, 20 = unknown) and `pos` (Cα) are per residue of the collated batch, `ec` per protein (-1 =
    unlabelled): they come from the structures, not the encoder's sample, so every encoder trains the same way.
    Quality measures: accuracy for residue_type / angle / ec, absolute distance error (Å) for distance.
    """
    device = pos.device
    mask = type_mask(aa.cpu(), cfg.mask_rate, gen).to(device) if "residue_type" in heads.tasks else None
    h = encoder(batch, type_mask=mask)
    losses: dict[str, torch.Tensor] = {}
    stats: dict[str, tuple[float, int]] = {}
    if mask is not None and mask.any():
        logits = heads.residue_type(h[mask])
        target = aa[mask]
        losses["residue_type"] = F.cross_entropy(logits, target)
        stats["residue_type"] = (float((logits.argmax(1) == target).sum()), int(mask.sum()))
    ptr = batch["ptr"].cpu()
    if "distance" in heads.tasks:
        pairs = sample_pairs(ptr, cfg.pairs_per_protein, gen).to(device)
        if pairs.numel():
            pred = heads.distance(torch.cat([h[pairs[0]], h[pairs[1]]], dim=1)).squeeze(1)
            target = (pos[pairs[0]] - pos[pairs[1]]).norm(dim=1) / DISTANCE_SCALE
            losses["distance"] = F.smooth_l1_loss(pred, target)
            err = float((pred.detach() - target).abs().sum()) * DISTANCE_SCALE
            stats["distance"] = (err, pairs.shape[1])
    if "angle" in heads.tasks:
        triples = sample_triples(pos.cpu(), ptr, cfg.pairs_per_protein, gen).to(device)
        if triples.numel():
            logits = heads.angle(torch.cat([h[triples[0]], h[triples[1]], h[triples[2]]], dim=1))
            target = angle_bins(pos, triples)
            losses["angle"] = F.cross_entropy(logits, target)
            stats["angle"] = (float((logits.argmax(1) == target).sum()), triples.shape[1])
    if "ec" in heads.tasks and bool((ec >= 0).any()):
        n_graphs = batch["num_graphs"]
        total = h.new_zeros(n_graphs, h.shape[1]).index_add_(0, batch["batch"], h)
        mean = total / torch.bincount(batch["batch"], minlength=n_graphs).clamp_min(1)[:, None].to(h.dtype)
        has = ec >= 0
        logits = heads.ec(mean[has])
        losses["ec"] = F.cross_entropy(logits, ec[has])
        stats["ec"] = (float((logits.argmax(1) == ec[has]).sum()), int(has.sum()))
    return losses, stats


def ec_classes(labels: dict[str, str | None], train_ids) -> list[str]:
    return sorted({labels[i] for i in train_ids if labels.get(i)})


def ec_targets(ids, labels: dict[str, str | None], classes: list[str]) -> np.ndarray:
    index = {c: k for k, c in enumerate(classes)}
    return np.array([index.get(labels.get(i) or "", -1) for i in ids], dtype=np.int64)
