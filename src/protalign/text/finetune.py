"""finetune stage: LoRA on the causal-LM loss over the TRAIN split's summaries (study finding 8), and loading back.

The study fine-tuned LLaMA-3.1-8B with QLoRA on every summary (test proteins included, which leaks); here only
`split.json["train"]` is trained on and `val` gives the held-out loss. Examples follow the study's prompt (entry id as
the user turn, the description as the answer, ChatML) or the model's own chat template. The adapter is written to
`models/adapters/<llm>/` and `load_with_adapter` merges it into the base, so `embed_text` can embed `<llm>+lora`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from protalign.storage import atomic_path, canonical_json_file, read_json
from protalign.text import llms
from protalign.text.embed import read_summaries

log = logging.getLogger(__name__)

ADAPTER_SUFFIX = "+lora"
PROMPT_FORMATS = ("study", "chat_template")
QUANTIZE = ("auto", "none", "4bit")
META_FILE = "protalign_adapter.json"
GROUP_BATCHES = 16  # batches per length-sorted group (finetune.group_by_length)


def adapter_dir(paths: Any, llm: str) -> Path:
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


# --- examples ---------------------------------------------------------------------------------------------------


def study_prompt(entry_id: str, text: str) -> str:
    """The study's training string (finetune_llama31.py): ChatML with the entry id as the user turn."""
    return f"<|im_start|>user\n{entry_id}<|im_end|>\n<|im_start|>assistant\n{text}<|im_end|>\n"


def format_example(tokenizer: Any, entry_id: str, text: str, prompt_format: str) -> tuple[str, str]:
    """(training string, format actually used); a tokenizer without a chat template falls back to `study`."""
    if prompt_format == "study":
        return study_prompt(entry_id, text), "study"
    if prompt_format != "chat_template":
        raise ValueError(f"finetune.prompt_format: unknown {prompt_format!r}; choose one of {PROMPT_FORMATS}")
    if not getattr(tokenizer, "chat_template", None):
        return study_prompt(entry_id, text), "study"
    turns = [{"role": "user", "content": entry_id}, {"role": "assistant", "content": text}]
    return tokenizer.apply_chat_template(turns, tokenize=False), "chat_template"


def split_examples(paths: Any) -> tuple[dict[str, list[tuple[str, str]]], list[dict[str, str]]]:
    """(id, summary) pairs of the train and val splits, and the entries skipped (empty summary) with a reason.

    Test ids are never read into the result: the leak the seed had (training on every summary) is impossible here.
    """
    split = read_json(paths.split)
    frame = read_summaries(paths.summaries)
    texts = dict(zip(frame["id"].astype(str), frame["text"].fillna("").astype(str), strict=True))
    out: dict[str, list[tuple[str, str]]] = {}
    skipped: list[dict[str, str]] = []
    for part in ("train", "val"):
        ids = [str(i) for i in split.get(part, [])]
        missing = [i for i in ids if i not in texts]
        if missing:
            raise ValueError(
                f"{len(missing)} {part} id(s) have no summary, e.g. {missing[:3]} (rerun summarize)"
            )
        out[part] = [(i, texts[i]) for i in ids if texts[i].strip()]
        skipped += [
            {"id": i, "split": part, "reason": "empty summary text"} for i in ids if not texts[i].strip()
        ]
    if not out["train"]:
        raise ValueError(f"no train-split summaries to fine-tune on ({paths.split})")
    return out, skipped


def tokenize_examples(tokenizer: Any, strings: Sequence[str], max_length: int) -> list[list[int]]:
    if max_length < 2:
        raise ValueError(f"finetune.max_length must be >= 2, got {max_length}")
    enc = tokenizer(list(strings), add_special_tokens=True, truncation=True, max_length=max_length)
    return [list(ids) for ids in enc["input_ids"]]


def _pad(tokenizer: Any, batch: Sequence[Sequence[int]], device: Any) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(map(len, batch))
    ids = torch.full((len(batch), width), int(tokenizer.pad_token_id), dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for r, row in enumerate(batch):
        ids[r, : len(row)] = torch.tensor(row, dtype=torch.long)
        mask[r, : len(row)] = 1
    return ids.to(device), mask.to(device)


def lm_loss_sum(model: Any, ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Summed next-token cross-entropy over real tokens (padding masked by the attention mask, not by token id:
    SmolLM2 pads with its end-of-turn token, which is also a real target) and the number of targets.

    Only the positions that have a real next token go through the LM head (transformers' boolean
    `logits_to_keep`, which keeps the model's own head and logit soft-capping), so neither padding nor the last
    position costs a row of vocabulary logits; the result equals the full-logits loss up to float rounding.
    """
    keep = torch.zeros_like(mask, dtype=torch.bool)
    keep[:, :-1] = mask[:, 1:] != 0  # position t predicts token t + 1, which must be real
    logits = model(input_ids=ids, attention_mask=mask, use_cache=False, logits_to_keep=keep).logits
    target = ids[:, 1:][keep[:, :-1]]
    if logits.shape != (target.numel(), logits.shape[-1]):
        raise RuntimeError(
            f"{type(model).__name__} ignored the boolean logits_to_keep (logits {tuple(logits.shape)} for "
            f"{target.numel()} targets); transformers >= 5.24 is needed"
        )
    if logits.dtype != torch.float32:  # half-precision models: the loss in float32
        logits = logits.float()
    loss = torch.nn.functional.cross_entropy(logits, target, reduction="sum")
    return loss, int(target.numel())


@torch.no_grad()
def mean_loss(model: Any, tokenizer: Any, tokens: Sequence[Sequence[int]], batch_size: int) -> float | None:
    """Token-averaged loss in eval mode (no dropout); None for an empty set. Rows are batched in length order
    (little padding); the sum over all tokens does not depend on the batching but for float rounding."""
    if not tokens:
        return None
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    order = sorted(range(len(tokens)), key=lambda i: len(tokens[i]))
    total, count = 0.0, 0
    for s in range(0, len(order), batch_size):
        batch = [tokens[i] for i in order[s : s + batch_size]]
        loss, n = lm_loss_sum(model, *_pad(tokenizer, batch, device))
        total, count = total + float(loss), count + n
    model.train(was_training)
    return total / max(count, 1)


def batch_plan(
    lengths: Sequence[int], batch_size: int, generator: torch.Generator, group_by_length: bool = False
) -> list[list[int]]:
    """One epoch's batches (row indices) from a seeded shuffle. `group_by_length` sorts each run of
    `GROUP_BATCHES` consecutive shuffled batches by length before cutting it into batches, then shuffles the batch
    order (as transformers' length-grouped sampler): same number of batches and rows, far less padding, but other
    batch compositions than the plain shuffle."""
    order = torch.randperm(len(lengths), generator=generator).tolist()
    if not group_by_length:
        return [order[s : s + batch_size] for s in range(0, len(order), batch_size)]
    mega = batch_size * GROUP_BATCHES
    batches: list[list[int]] = []
    for s in range(0, len(order), mega):
        chunk = sorted(order[s : s + mega], key=lambda i: lengths[i])
        batches += [chunk[k : k + batch_size] for k in range(0, len(chunk), batch_size)]
    return [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]


# --- model ------------------------------------------------------------------------------------------------------


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
        raise RuntimeError("finetune.quantize=4bit needs a CUDA device and the bitsandbytes package")
    return quantize != "none" and possible


def _tie_head(base: Any) -> Any:
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
        return _tie_head(loaded.model), loaded.tokenizer, loaded.fingerprint, False
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


# --- training ---------------------------------------------------------------------------------------------------


def lora_config(p: Any) -> Any:
    from peft import LoraConfig

    return LoraConfig(
        r=p.lora.r,
        lora_alpha=p.lora.alpha,
        lora_dropout=p.lora.dropout,
        target_modules=list(p.lora.target_modules),
        bias="none",
        task_type="CAUSAL_LM",
    )


def train_lora(
    model: Any,
    tokenizer: Any,
    train_tokens: Sequence[Sequence[int]],
    val_tokens: Sequence[Sequence[int]],
    p: Any,
    four_bit: bool = False,
    on_step: Callable[[int, dict[str, float]], None] | None = None,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
) -> tuple[Any, dict[str, Any]]:
    """LoRA-wrap `model` and train it (AdamW, cosine decay without warm-up, as the study); returns (peft model,
    history). Every random step (LoRA init, dropout, shuffling) follows `p.seed`."""
    from peft import get_peft_model, prepare_model_for_kbit_training

    if p.epochs < 1 or p.batch_size < 1 or p.lr <= 0:
        raise ValueError(
            f"finetune: epochs, batch_size must be >= 1 and lr > 0 (got {p.epochs}, {p.batch_size}, {p.lr})"
        )
    torch.manual_seed(p.seed)
    if four_bit:  # GPU-only path
        model = prepare_model_for_kbit_training(model)
    peft_model = get_peft_model(model, lora_config(p))
    trainable = [q for q in peft_model.parameters() if q.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=p.lr)
    per_epoch = math.ceil(len(train_tokens) / p.batch_size)
    total = p.epochs * per_epoch
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * s / total))
    )
    shuffle = torch.Generator().manual_seed(p.seed)
    device = next(peft_model.parameters()).device
    history: dict[str, Any] = {
        "val_loss": [mean_loss(peft_model, tokenizer, val_tokens, p.batch_size)],
        "train_loss": [],
        "n_trainable": sum(q.numel() for q in trainable),
        "steps": total,
    }
    peft_model.train()
    step, start = 0, time.perf_counter()
    for epoch in range(1, p.epochs + 1):
        plan = batch_plan([len(t) for t in train_tokens], p.batch_size, shuffle, p.group_by_length)
        for rows in plan:
            ids, mask = _pad(tokenizer, [train_tokens[i] for i in rows], device)
            loss_sum, count = lm_loss_sum(peft_model, ids, mask)
            loss = loss_sum / max(count, 1)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"finetune: non-finite loss at step {step + 1} (lower finetune.lr?)")
            loss.backward()
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            history["train_loss"].append(float(loss))
            if on_step is not None:
                on_step(step, {"train_loss": float(loss), "lr": schedule.get_last_lr()[0], "epoch": epoch})
        val = mean_loss(peft_model, tokenizer, val_tokens, p.batch_size)
        history["val_loss"].append(val)
        if on_epoch is not None:
            on_epoch(
                step,
                {"val_loss": val, "epoch_train_loss": sum(history["train_loss"][-per_epoch:]) / per_epoch},
            )
    history["seconds"] = time.perf_counter() - start
    history["steps_per_s"] = total / max(history["seconds"], 1e-9)
    peft_model.eval()
    return peft_model, history


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run(params: Any, paths: Any, llm: str) -> dict[str, Any]:
    """Fine-tune `llm` on the train split's summaries; write `models/adapters/<llm>/` and one MLflow run."""
    from protalign.tracking import mlflow_run

    p = params.finetune
    spec = llms.get_spec(llm)
    torch.set_num_threads(p.threads)
    examples, skipped = split_examples(paths)
    model, tokenizer, fp, four_bit = load_causal_lm(spec, paths.cache, p.device, p.quantize)
    formatted = {
        part: [format_example(tokenizer, i, t, p.prompt_format) for i, t in rows]
        for part, rows in examples.items()
    }
    used = sorted({f for rows in formatted.values() for _, f in rows})
    if p.prompt_format == "chat_template" and used == ["study"]:
        log.warning("%s: the tokenizer has no chat template; falling back to the study's ChatML prompt", llm)
    tokens = {
        part: tokenize_examples(tokenizer, [s for s, _ in rows], p.max_length)
        for part, rows in formatted.items()
    }
    n_truncated = sum(len(t) >= p.max_length for t in tokens["train"])
    run_params = {
        "finetune": {k: v for k, v in dataclasses.asdict(p).items() if k != "llms"},
        "llm": llm,
        "base_model": spec.source,
        "n_train": len(tokens["train"]),
        "n_val": len(tokens["val"]),
    }
    tags = {
        "base_model": spec.source,
        "base_model.kind": spec.kind,
        "base_fingerprint": fingerprint_sha(fp),
        "prompt_format_used": ",".join(used),
        "quantized_4bit": str(four_bit),
    }
    with mlflow_run(paths, "finetune", llm, run_params) as tracker:
        tracker.set_tags(tags)
        peft_model, history = train_lora(
            model,
            tokenizer,
            tokens["train"],
            tokens["val"],
            p,
            four_bit,
            on_step=lambda s, m: tracker.log_metrics(m, step=s),
            on_epoch=lambda s, m: tracker.log_metrics(m, step=s),
        )
        meta = {
            "base": llm,
            "base_spec": dataclasses.asdict(spec),
            "base_fingerprint": fp,
            "base_fingerprint_sha": fingerprint_sha(fp),
            "prompt_format": p.prompt_format,
            "prompt_format_used": used,
            "quantized_4bit": four_bit,
            "seed": p.seed,
            "train_ids": [i for i, _ in examples["train"]],
            "val_ids": [i for i, _ in examples["val"]],
            "skipped": skipped,
            "n_truncated": n_truncated,
            "val_loss": history["val_loss"],
            "steps": history["steps"],
            "n_trainable": history["n_trainable"],
        }
        # the saved config would name the converted-cache directory (an absolute path): name the source instead
        peft_model.peft_config["default"].base_model_name_or_path = spec.source
        target = adapter_dir(paths, llm)
        with atomic_path(target) as tmp:
            peft_model.save_pretrained(
                tmp, save_embedding_layers=False
            )  # no hub look-up: embeddings are frozen
            canonical_json_file(tmp / "adapter_config.json", ("target_modules", "exclude_modules"))
            (tmp / "README.md").unlink(
                missing_ok=True
            )  # PEFT's model card template: no information, absolute paths
            (tmp / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        for f in sorted(target.iterdir()):
            tracker.log_artifact(f)
        tracker.set_tags({"adapter_sha256": _sha256(target / "adapter_model.safetensors")})
        final = {
            "final_val_loss": history["val_loss"][-1],
            "initial_val_loss": history["val_loss"][0],
            "steps_per_s": history["steps_per_s"],
            "n_trainable": history["n_trainable"],
        }
        tracker.log_metrics({k: v for k, v in final.items() if v is not None})
    log.info(
        "%s: %d LoRA steps at %.2f steps/s; val loss %s",
        llm,
        history["steps"],
        history["steps_per_s"],
        " -> ".join(f"{v:.4f}" for v in history["val_loss"] if v is not None),
    )
    return {**meta, "history": history, "run_id": tracker.run_id}


# --- loading back -----------------------------------------------------------------------------------------------


def load_with_adapter(paths: Any, base: str, device: str = "cpu") -> llms.LoadedLLM:
    """Base + the adapter in `models/adapters/<base>/`, merged, as a `LoadedLLM` named `<base>+lora` for embedding.

    Refuses an adapter trained on other base weights, and checks every saved LoRA tensor was actually loaded
    (PEFT only warns about key mismatches, which would silently embed with the base model).
    """
    from peft import PeftModel, get_peft_model_state_dict
    from safetensors.torch import load_file

    directory = adapter_dir(paths, base)
    if not (directory / "adapter_model.safetensors").exists():
        raise FileNotFoundError(f"no LoRA adapter in {directory} (has `finetune@{base}` run?)")
    meta = read_json(directory / META_FILE)
    spec = llms.get_spec(base)
    model, tokenizer, fp, _ = load_causal_lm(spec, paths.cache, device, quantize="none")
    if meta["base_fingerprint_sha"] != fingerprint_sha(fp):
        raise RuntimeError(
            f"adapter {directory} was trained on other {base} weights ({meta['base_fingerprint']} "
            f"!= {fp}); rerun finetune"
        )
    peft_model = PeftModel.from_pretrained(model, directory)
    saved = load_file(str(directory / "adapter_model.safetensors"))
    live = get_peft_model_state_dict(peft_model)
    if set(saved) != set(live) or any(not torch.equal(saved[k].to(live[k]), live[k]) for k in saved):
        raise RuntimeError(f"adapter {directory} does not fit {base}: its tensors were not all loaded")
    merged = peft_model.merge_and_unload()
    model = getattr(merged, merged.base_model_prefix).eval()
    tokenizer.padding_side = "right"
    aspec = adapter_spec(base)
    afp = {**fp, "name": aspec.name, "adapter_sha256": _sha256(directory / "adapter_model.safetensors")}
    return llms.LoadedLLM(spec=aspec, model=model, tokenizer=tokenizer, fingerprint=afp)
