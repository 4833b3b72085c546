"""Training examples for LoRA: the train/val summaries of the split, formatted as prompts and tokenised."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from protalign.paths import Paths
from protalign.storage import read_json
from protalign.text.embed import read_summaries

PROMPT_FORMATS = ("study", "chat_template")


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


def split_examples(paths: Paths) -> tuple[dict[str, list[tuple[str, str]]], list[dict[str, str]]]:
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
