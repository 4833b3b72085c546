"""LoRA adapters on disk: their names (`<llm>+lora`), where they live, saving one, and loading one back merged."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import torch

from protalign.errors import MissingArtifactError
from protalign.paths import Paths
from protalign.storage import atomic_path, canonical_json_file, file_sha256, read_json
from protalign.text import llms
from protalign.text.lora.loading import fingerprint_sha, load_causal_lm

ADAPTER_SUFFIX = "+lora"
META_FILE = "protalign_adapter.json"
WEIGHTS_FILE = "adapter_model.safetensors"  # PEFT's name for the saved LoRA tensors


def adapter_dir(paths: Paths, llm: str) -> Path:
    return paths.root / "models" / "adapters" / llm


def adapter_name(base: str) -> str:
    return f"{base}{ADAPTER_SUFFIX}"


def base_name(name: str) -> str:
    """`smollm2-135m+lora` -> `smollm2-135m` (a name without the suffix is an error)."""
    if not name.endswith(ADAPTER_SUFFIX) or name == ADAPTER_SUFFIX:
        raise ValueError(f"{name!r} is not an adapter model name (<llm>{ADAPTER_SUFFIX})")
    return name[: -len(ADAPTER_SUFFIX)]


def adapter_spec(base: str) -> llms.LLMSpec:
    """The registry spec of base + adapter: the base's weights source under the `<base>+lora` name."""
    return dataclasses.replace(llms.get_spec(base), name=adapter_name(base))


def adapter_sha256(directory: Path) -> str:
    """SHA-256 of the adapter's LoRA tensors (names the exact adapter in tags and fingerprints)."""
    return file_sha256(directory / WEIGHTS_FILE)


def save_adapter(peft_model: Any, target: Path, meta: dict[str, Any], base_source: str) -> None:
    """Write the LoRA tensors, PEFT's config and our meta to `target` atomically.

    The saved config would name the converted-cache directory (an absolute path): it names `base_source` instead.
    """
    peft_model.peft_config["default"].base_model_name_or_path = base_source
    with atomic_path(target) as tmp:
        peft_model.save_pretrained(tmp, save_embedding_layers=False)  # no hub look-up: embeddings are frozen
        # PEFT stores target_modules from a set: its order follows PYTHONHASHSEED unless rewritten canonically
        canonical_json_file(tmp / "adapter_config.json", ("target_modules", "exclude_modules"))
        # PEFT's model card template: no information, absolute paths
        (tmp / "README.md").unlink(missing_ok=True)
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")


def load_with_adapter(paths: Paths, base: str, device: str = "cpu") -> llms.LoadedLLM:
    """Base + the adapter in `models/adapters/<base>/`, merged, as a `LoadedLLM` named `<base>+lora` for embedding.

    Refuses an adapter trained on other base weights, and checks every saved LoRA tensor was actually loaded
    (PEFT only warns about key mismatches, which would silently embed with the base model).
    """
    from peft import PeftModel, get_peft_model_state_dict
    from safetensors.torch import load_file

    directory = adapter_dir(paths, base)
    if not (directory / WEIGHTS_FILE).exists():
        raise MissingArtifactError(f"no LoRA adapter in {directory} (has `finetune@{base}` run?)")
    meta = read_json(directory / META_FILE)
    spec = llms.get_spec(base)
    model, tokenizer, fp, _ = load_causal_lm(spec, paths.cache, device, quantize="none")
    if meta["base_fingerprint_sha"] != fingerprint_sha(fp):
        raise RuntimeError(
            f"adapter {directory} was trained on other {base} weights ({meta['base_fingerprint']} "
            f"!= {fp}); rerun finetune"
        )
    peft_model = PeftModel.from_pretrained(model, directory)
    saved = load_file(str(directory / WEIGHTS_FILE))
    live = get_peft_model_state_dict(peft_model)
    if set(saved) != set(live) or any(not torch.equal(saved[k].to(live[k]), live[k]) for k in saved):
        raise RuntimeError(f"adapter {directory} does not fit {base}: its tensors were not all loaded")
    merged = peft_model.merge_and_unload()
    model = getattr(merged, merged.base_model_prefix).eval()
    tokenizer.padding_side = "right"
    aspec = adapter_spec(base)
    afp = {**fp, "name": aspec.name, "adapter_sha256": adapter_sha256(directory)}
    return llms.LoadedLLM(spec=aspec, model=model, tokenizer=tokenizer, fingerprint=afp)
