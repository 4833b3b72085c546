"""Projection heads that map text and structure embeddings into one shared, L2-normalised space.

As in the study, the text side is a single linear map and the structure side 1-3 linear layers with ReLU between;
outputs are unit vectors so every similarity downstream is a cosine.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from protalign.errors import MissingArtifactError
from protalign.storage import save_torch

MAX_STRUCTURE_LAYERS = 3


@dataclass(frozen=True)
class HeadConfig:
    """Everything needed to rebuild the two heads (the weights live beside it in the .pt file)."""

    text_dim: int
    structure_dim: int
    dim: int
    structure_layers: int = 1
    hidden_dim: int | None = None  # None: the study's rule, equal steps from structure_dim to dim

    def __post_init__(self) -> None:
        if not 1 <= self.structure_layers <= MAX_STRUCTURE_LAYERS:
            raise ValueError(
                f"align.structure_layers must be 1..{MAX_STRUCTURE_LAYERS}, got {self.structure_layers}"
            )
        for name in ("text_dim", "structure_dim", "dim", "hidden_dim"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"head config {name} must be >= 1, got {getattr(self, name)}")


def structure_widths(config: HeadConfig) -> list[int]:
    """Layer widths of the structure head, input first: a fixed `hidden_dim` for every hidden layer, or (None) the
    study's shape rule, equal steps from the GDM width to the output width (3072 -> 2816 -> 2560 -> 2304)."""
    n = config.structure_layers
    if config.hidden_dim is not None:
        return [config.structure_dim] + [config.hidden_dim] * (n - 1) + [config.dim]
    step = (config.dim - config.structure_dim) / n
    return (
        [config.structure_dim]
        + [int(round(config.structure_dim + step * i)) for i in range(1, n)]
        + [config.dim]
    )


class TextHead(nn.Module):
    """Linear(d_llm -> d), then L2 normalisation."""

    def __init__(self, config: HeadConfig) -> None:
        super().__init__()
        self.proj = nn.Linear(config.text_dim, config.dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.proj(x), dim=-1)


class StructureHead(nn.Module):
    """1-3 Linear layers (ReLU between, widths from `structure_widths`), then L2 normalisation."""

    def __init__(self, config: HeadConfig) -> None:
        super().__init__()
        widths = structure_widths(config)
        layers: list[nn.Module] = []
        for i, (d_in, d_out) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
            if i > 0:
                layers.append(nn.ReLU())
            layers.append(nn.Linear(d_in, d_out))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.net(x), dim=-1)


def build_heads(config: HeadConfig, seed: int) -> tuple[TextHead, StructureHead]:
    """Fresh heads initialised from `seed` alone (forked RNG: the global torch state is left untouched).

    The same call gives the untrained baseline in evaluation, so trained and baseline start from identical weights.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        text_head = TextHead(config)
        structure_head = StructureHead(config)
    return text_head, structure_head


def save_heads(
    path: str | Path,
    text_head: TextHead,
    structure_head: StructureHead,
    config: HeadConfig,
    info: dict[str, Any],
) -> None:
    """Write both state dicts + the rebuild config + training info atomically (a crash leaves no half file)."""
    payload = {
        "config": dataclasses.asdict(config),
        "info": dict(info),
        "text_head": text_head.state_dict(),
        "structure_head": structure_head.state_dict(),
    }
    save_torch(path, payload)


def load_heads(path: str | Path) -> tuple[TextHead, StructureHead, HeadConfig, dict[str, Any]]:
    """Rebuild the heads saved by `save_heads`, in eval mode."""
    path = Path(path)
    if not path.exists():
        raise MissingArtifactError(f"no trained heads at {path} (has the align stage run?)")
    payload = torch.load(path, map_location="cpu", weights_only=True)
    config = HeadConfig(**payload["config"])
    text_head, structure_head = TextHead(config), StructureHead(config)
    text_head.load_state_dict(payload["text_head"])
    structure_head.load_state_dict(payload["structure_head"])
    text_head.eval()
    structure_head.eval()
    return text_head, structure_head, config, dict(payload["info"])
