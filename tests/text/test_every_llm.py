"""Every LLM registry entry with params.yaml's embed_text settings: offline entries load and embed a summary;
hub entries (not downloadable here) are checked as configs and must fail with the clear hub error offline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from protalign.params import load_params
from protalign.paths import Paths
from protalign.text import embed as E
from protalign.text import llms

REPO = Path(__file__).resolve().parents[2]
PARAMS = load_params(REPO / "params.yaml")
OFFLINE = sorted(n for n, s in llms.REGISTRY.items() if s.kind in llms.PACKAGE_KINDS)
HUB = sorted(n for n, s in llms.REGISTRY.items() if s.kind == "hub")
SUMMARY = (
    "The protein structure 154L has a sequence length of: 164 amino acids. Here is more information: "
    "The protein is named T4 LYSOZYME. It was derived from the organism Enterobacteria phage T4 (10665)."
)


def test_params_yaml_names_only_registered_llms():
    p = PARAMS
    for name in (*p.embed_text.llms, *p.finetune.llms, *(m.removesuffix("+lora") for m in p.align.llms)):
        assert llms.get_spec(name).name == name


@pytest.mark.parametrize("name", OFFLINE)
def test_offline_entry_embeds_a_summary(name):
    """Loaded from its package as embed_text would (dtype, device, max_length, pooling from params.yaml)."""
    cfg = PARAMS.embed_text
    torch.set_num_threads(2)
    llm = llms.load_llm(name, cache=Paths(REPO).cache, device=cfg.device, dtype=cfg.dtype,
                        quantize_4bit=cfg.quantize_4bit)  # fmt: skip
    spec = llms.get_spec(name)
    assert llm.width == spec.width and not llm.model.training
    tokens, truncated = E.tokenize(llm, [SUMMARY, "Short text."], cfg.max_length)
    assert truncated == 0 and len(tokens[0]) > len(tokens[1]) > 0
    vectors = E.forward(llm, tokens, E.resolve_pooling(cfg.pooling, spec.pooling))
    assert vectors.shape == (2, spec.width) and np.isfinite(vectors).all()
    assert np.abs(vectors[0] - vectors[1]).max() > 1e-3  # different texts, different vectors


@pytest.mark.parametrize("name", HUB)
def test_hub_entry_is_a_valid_config_and_fails_clearly_offline(name, monkeypatch):
    """No download here: the entry's spec and loader options are built; loading says what to do."""
    spec = llms.get_spec(name)
    org, _, model = spec.source.partition("/")
    assert org and model and spec.width > 0 and spec.pooling in llms.POOLINGS
    assert E.resolve_pooling(PARAMS.embed_text.pooling, spec.pooling) == "last_token"
    kwargs = llms._hub_kwargs(llms.resolve_device(PARAMS.embed_text.device).type, PARAMS.embed_text.quantize_4bit)
    assert "token" in kwargs
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(RuntimeError, match=rf"{name}.*{spec.source}.*HF_TOKEN"):
        llms.load_llm(name, device="cpu", dtype="float32")
