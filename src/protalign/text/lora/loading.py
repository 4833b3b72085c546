"""The causal LM to fine-tune: a registry LLM with its LM head, in float or 4-bit NF4 (QLoRA) where possible."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch

from protalign.errors import ToolError
from protalign.text import llms

QUANTIZE = ("auto", "none", "4bit")


def want_4bit(quantize: str, device: str) -> bool:
    """QLoRA only where it can run: bitsandbytes importable and a CUDA device (never on CPU)."""
    if quantize not in QUANTIZE:
        raise ValueError(f"finetune.quantize: unknown {quantize!r}; choose one of {QUANTIZE}")
    import importlib.util

    possible = (
        device.startswith("cuda")
        and torch.cuda.is_available()
        and bool(importlib.util.find_spec("bitsandbytes"))
    )
    if quantize == "4bit" and not possible:
        raise ToolError("finetune.quantize=4bit needs a CUDA device and the bitsandbytes package")
    return quantize != "none" and possible


def tie_head(base: Any) -> Any:
    """A causal LM around an already-loaded base model whose output head is its input embedding (tied)."""
    from transformers import AutoModelForCausalLM

    if not getattr(base.config, "tie_word_embeddings", False):
        raise RuntimeError(
            f"{type(base).__name__} has an untied LM head that the base loader does not keep; register the model as "
            "`hub`/`local` so the causal LM is loaded with its head"
        )
    with torch.device("meta"):
        causal = AutoModelForCausalLM.from_config(base.config, dtype=base.dtype)
    setattr(causal, causal.base_model_prefix, base)
    causal.get_output_embeddings().weight = base.get_input_embeddings().weight
    meta = [n for n, p in causal.named_parameters() if p.is_meta]
    if meta:
        raise RuntimeError(f"causal LM wrapper left parameters unset: {meta[:3]}")
    return causal


def load_causal_lm(spec: llms.LLMSpec, cache: Path, device: str = "cpu", quantize: str = "auto"):
    """(causal LM, tokenizer, fingerprint, 4-bit?) for a registry spec.

    Package GGUF models come through `llms.load_llm` (its converted-float cache) and get their tied head back;
    hub/local models are loaded with their own head, in 4-bit NF4 (QLoRA, as the study) where `want_4bit`.
    """
    four_bit = want_4bit(quantize, device)
    if spec.kind == "gguf_package":
        if four_bit and quantize == "4bit":
            raise RuntimeError(f"{spec.name}: 4-bit loading is for hub/local models, not packaged GGUF files")
        loaded = llms.load_llm(spec, cache=cache, device=device)
        return tie_head(loaded.model), loaded.tokenizer, loaded.fingerprint, False
    import os

    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs: dict[str, Any] = {"token": os.environ.get("HF_TOKEN") or None} if spec.kind == "hub" else {}
    if four_bit:  # GPU-only path: not exercised by the CPU test-suite
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_compute_dtype=torch.bfloat16,
            bnb_4bit_use_double_quant=True,
        )
        kwargs["device_map"] = {"": device}
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    tokenizer = AutoTokenizer.from_pretrained(
        spec.source, **({"token": kwargs["token"]} if "token" in kwargs else {})
    )
    model = AutoModelForCausalLM.from_pretrained(spec.source, dtype=dtype, **kwargs)
    if not four_bit:
        model.to(device)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer, llms.fingerprint(spec), four_bit


def fingerprint_sha(fp: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(fp, sort_keys=True).encode()).hexdigest()[:16]
