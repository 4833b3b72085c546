"""Load the run's models for one pair exactly as the pipeline used them (same checkpoint, pooling, truncation).

The heads were trained on `embeddings/<side>/<model>/`, so the settings that produced those embeddings (their
meta.json) win over params.yaml, which may have been edited since the run.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from protalign.align.heads import HeadConfig, StructureHead, TextHead, load_heads
from protalign.paths import Paths
from protalign.storage import META_FILE, file_sha256
from protalign.structure.registry import StructureEncoder
from protalign.structure.train import load_checkpoint
from protalign.text.embed import resolve_pooling
from protalign.text.llms import LoadedLLM, get_spec, load_llm
from protalign.text.lora.adapters import ADAPTER_SUFFIX, base_name, load_with_adapter
from protalign.use.pairs import Pair, UseError

log = logging.getLogger(__name__)


@dataclass
class Heads:
    text: TextHead
    structure: StructureHead
    config: HeadConfig

    @torch.no_grad()
    def project_text(self, vectors: np.ndarray) -> np.ndarray:
        """LLM vectors (N x text_dim) -> unit vectors in the aligned space."""
        return self.text(torch.as_tensor(self._check(vectors, self.config.text_dim, "text"))).numpy()

    @torch.no_grad()
    def project_structure(self, vectors: np.ndarray) -> np.ndarray:
        """GDM vectors (N x structure_dim) -> unit vectors in the aligned space."""
        v = self._check(vectors, self.config.structure_dim, "structure")
        return self.structure(torch.as_tensor(v)).numpy()

    @staticmethod
    def _check(vectors: np.ndarray, width: int, side: str) -> np.ndarray:
        v = np.asarray(vectors, dtype=np.float32)
        if v.ndim != 2 or v.shape[1] != width:
            raise UseError(
                f"{side} vectors have shape {v.shape}, the heads expect width {width}; rerun the pipeline"
            )
        return v


def load_pair_heads(pair: Pair) -> Heads:
    text, structure, config, _ = load_heads(pair.heads)
    return Heads(text=text, structure=structure, config=config)


def embeddings_meta(paths: Paths, side: str, model: str) -> dict[str, Any] | None:
    path = paths.root / "embeddings" / side / model / META_FILE
    return json.loads(path.read_text()) if path.exists() else None


def structure_encoder(params: Any, paths: Paths, gdm: str) -> tuple[StructureEncoder, dict[str, Any]]:
    """The trained GDM with the readout its embeddings used; refuses a checkpoint newer than those embeddings."""
    model_path = paths.structure_model(gdm)
    if not model_path.exists():
        raise UseError(f"no structure model at {model_path} (has train_structure@{gdm} run? run `dvc repro`)")
    encoder, _ = load_checkpoint(model_path)
    meta = embeddings_meta(paths, "structure", gdm) or {}
    sha = meta.get("model_sha256")
    if sha and sha != file_sha256(model_path):
        raise UseError(
            f"{model_path} is not the model that wrote embeddings/structure/{gdm} (and trained the heads on them); "
            "run `dvc repro` so models, embeddings and heads agree"
        )
    encoder.pooling = meta.get("pooling", params.structure.pooling)
    info = {
        "model": str(model_path),
        "model_sha256": sha or file_sha256(model_path),
        "pooling": encoder.pooling,
    }
    return encoder, info


def text_settings(params: Any, paths: Paths, llm: str) -> dict[str, Any]:
    """Pooling, truncation and dtype of the run's text embeddings (params.embed_text where they are absent)."""
    p = params.embed_text
    meta = embeddings_meta(paths, "text", llm) or {}
    pooling = meta.get("pooling") or resolve_pooling(p.pooling, _base_spec(llm).pooling)
    return {
        "pooling": pooling,
        "max_length": int(meta.get("max_length", p.max_length)),
        "dtype": meta.get("dtype", p.dtype),
    }


def _base_spec(llm: str):
    base = base_name(llm) if llm.endswith(ADAPTER_SUFFIX) else llm
    try:
        return get_spec(base)
    except (KeyError, ValueError) as exc:
        raise UseError(f"LLM {llm!r} of the pair is not in the registry: {exc}") from exc


def load_pair_llm(params: Any, paths: Paths, llm: str) -> LoadedLLM:
    """The pair's LLM as `embed_text` (or `embed_text_finetuned` for `<llm>+lora`) loaded it for the run."""
    p = params.embed_text
    _base_spec(llm)
    if llm.endswith(ADAPTER_SUFFIX):
        return load_with_adapter(paths, base_name(llm), device=p.device)
    dtype = text_settings(params, paths, llm)["dtype"]
    return load_llm(llm, cache=paths.cache, device=p.device, dtype=dtype, quantize_4bit=p.quantize_4bit)
