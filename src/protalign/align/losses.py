"""In-batch contrastive losses on unit vectors: row i of `structure` and row i of `text` are the positive pair.

"study": InfoNCE in the protein->text direction on cosine rescaled to [0, 1], ((cos + 1) / 2) / tau. The +1/2
shift is constant per row, so softmax ignores it and the loss equals plain InfoNCE on cos / (2 tau) (tau = 0.2 in
the study behaves like tau = 0.4); tests check this numerically.
"clip": symmetric InfoNCE (structure->text and text->structure averaged) on cos / tau.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

LOSSES = ("study", "clip")


def info_nce(logits: torch.Tensor) -> torch.Tensor:
    """Cross-entropy where row i's positive is column i (mean over rows)."""
    if logits.ndim != 2 or logits.shape[0] != logits.shape[1]:
        raise ValueError(f"InfoNCE needs a square similarity matrix, got {tuple(logits.shape)}")
    target = torch.arange(logits.shape[0], device=logits.device)
    return F.cross_entropy(logits, target)


def study_loss(structure: torch.Tensor, text: torch.Tensor, temperature: float) -> torch.Tensor:
    """Protein->text InfoNCE on (cos + 1) / 2 divided by `temperature` (the study's formulation)."""
    similarity = (structure @ text.T + 1.0) / 2.0
    return info_nce(similarity / temperature)


def clip_loss(structure: torch.Tensor, text: torch.Tensor, temperature: float) -> torch.Tensor:
    """Symmetric InfoNCE on cos / `temperature` (CLIP)."""
    logits = structure @ text.T / temperature
    return (info_nce(logits) + info_nce(logits.T)) / 2.0


def alignment_loss(
    name: str, structure: torch.Tensor, text: torch.Tensor, temperature: float
) -> torch.Tensor:
    """Dispatch on params.align.loss; unknown names fail loudly."""
    if temperature <= 0:
        raise ValueError(f"align.temperature must be > 0, got {temperature}")
    if structure.shape != text.shape:
        raise ValueError(f"structure {tuple(structure.shape)} and text {tuple(text.shape)} batches differ")
    if name == "study":
        return study_loss(structure, text, temperature)
    if name == "clip":
        return clip_loss(structure, text, temperature)
    raise ValueError(f"unknown align.loss {name!r}; expected one of {LOSSES}")
