"""The LoRA training loop: AdamW with cosine decay over the train tokens, val loss per epoch, seeded throughout."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

from protalign.params import FinetuneParams
from protalign.text.lora.batching import batch_plan, lm_loss_sum, mean_loss, pad_batch

Callback = Callable[[int, dict[str, float]], None]


def lora_config(p: FinetuneParams) -> Any:
    from peft import LoraConfig

    return LoraConfig(
        r=p.lora.r,
        lora_alpha=p.lora.alpha,
        lora_dropout=p.lora.dropout,
        target_modules=list(p.lora.target_modules),
        bias="none",
        task_type="CAUSAL_LM",
    )


def _cosine_schedule(optimizer: torch.optim.Optimizer, total: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Cosine decay from the full rate to zero over `total` steps, without warm-up (as the study)."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * s / total)))


def _train_step(model: Any, ids: torch.Tensor, mask: torch.Tensor, optimizer, schedule, step: int) -> float:
    """One optimiser step on a padded batch; returns its token-averaged loss. `step` (1-based) names the step in
    the error a non-finite loss raises."""
    loss_sum, count = lm_loss_sum(model, ids, mask)
    loss = loss_sum / max(count, 1)
    if not torch.isfinite(loss):
        raise FloatingPointError(f"finetune: non-finite loss at step {step} (lower finetune.lr?)")
    loss.backward()
    optimizer.step()
    schedule.step()
    optimizer.zero_grad(set_to_none=True)
    return float(loss)


def train_lora(
    model: Any,
    tokenizer: Any,
    train_tokens: Sequence[Sequence[int]],
    val_tokens: Sequence[Sequence[int]],
    p: FinetuneParams,
    four_bit: bool = False,
    on_step: Callback | None = None,
    on_epoch: Callback | None = None,
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
    schedule = _cosine_schedule(optimizer, total)
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
        for rows in batch_plan([len(t) for t in train_tokens], p.batch_size, shuffle, p.group_by_length):
            ids, mask = pad_batch(tokenizer, [train_tokens[i] for i in rows], device)
            loss = _train_step(peft_model, ids, mask, optimizer, schedule, step + 1)
            step += 1
            history["train_loss"].append(loss)
            if on_step is not None:
                on_step(step, {"train_loss": loss, "lr": schedule.get_last_lr()[0], "epoch": epoch})
        val = mean_loss(peft_model, tokenizer, val_tokens, p.batch_size)
        history["val_loss"].append(val)
        if on_epoch is not None:
            epoch_train = sum(history["train_loss"][-per_epoch:]) / per_epoch
            on_epoch(step, {"val_loss": val, "epoch_train_loss": epoch_train})
    history["seconds"] = time.perf_counter() - start
    history["steps_per_s"] = total / max(history["seconds"], 1e-9)
    peft_model.eval()
    return peft_model, history
