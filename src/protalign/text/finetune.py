"""finetune stage: LoRA on the causal-LM loss over the TRAIN split's summaries (study finding 8).

The study fine-tuned LLaMA-3.1-8B with QLoRA on every summary (test proteins included, which leaks); here only
`split.json["train"]` is trained on and `val` gives the held-out loss. Examples follow the study's prompt (entry id as
the user turn, the description as the answer, ChatML) or the model's own chat template. The adapter is written to
`models/adapters/<llm>/`; `lora.adapters.load_with_adapter` merges it into the base, so `embed_text_finetuned` can
embed `<llm>+lora`. The jobs themselves live in `protalign.text.lora` (prompts, loading, batching, training,
adapters); this module only wires them into the stage and its MLflow run.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import torch

from protalign.params import FinetuneParams, Params
from protalign.paths import Paths
from protalign.text import llms
from protalign.text.lora.adapters import adapter_dir, adapter_sha256, save_adapter
from protalign.text.lora.loading import fingerprint_sha, load_causal_lm
from protalign.text.lora.prompts import format_example, split_examples, tokenize_examples
from protalign.text.lora.training import train_lora

log = logging.getLogger(__name__)

Examples = dict[str, list[tuple[str, str]]]


def _tokenized_examples(
    tokenizer: Any, examples: Examples, p: FinetuneParams, llm: str
) -> tuple[dict[str, list[list[int]]], list[str]]:
    """Token ids per split part, and the prompt formats actually used (a missing chat template falls back)."""
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
    return tokens, used


def _adapter_meta(
    llm: str,
    spec: llms.LLMSpec,
    fp: dict[str, Any],
    p: FinetuneParams,
    used: list[str],
    four_bit: bool,
    examples: Examples,
    skipped: list[dict[str, str]],
    n_truncated: int,
    history: dict[str, Any],
) -> dict[str, Any]:
    """What the adapter directory records about its own making (base, prompts, ids, losses)."""
    return {
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


def run(params: Params, paths: Paths, llm: str) -> dict[str, Any]:
    """Fine-tune `llm` on the train split's summaries; write `models/adapters/<llm>/` and one MLflow run."""
    from protalign.tracking import mlflow_run

    p = params.finetune
    spec = llms.get_spec(llm)
    torch.set_num_threads(p.threads)
    examples, skipped = split_examples(paths)
    model, tokenizer, fp, four_bit = load_causal_lm(spec, paths.cache, p.device, p.quantize)
    tokens, used = _tokenized_examples(tokenizer, examples, p, llm)
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

        def log_step(step: int, metrics: dict[str, float]) -> None:
            tracker.log_metrics(metrics, step=step)

        peft_model, history = train_lora(
            model, tokenizer, tokens["train"], tokens["val"], p, four_bit, on_step=log_step, on_epoch=log_step
        )
        meta = _adapter_meta(llm, spec, fp, p, used, four_bit, examples, skipped, n_truncated, history)
        target = adapter_dir(paths, llm)
        save_adapter(peft_model, target, meta, spec.source)
        for f in sorted(target.iterdir()):
            tracker.log_artifact(f)
        tracker.set_tags({"adapter_sha256": adapter_sha256(target)})
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
