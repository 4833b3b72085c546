"""Batches for the causal-LM loss: padding, the summed next-token loss, eval loss and the epoch's batch plan."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

GROUP_BATCHES = 16  # batches per length-sorted group (finetune.group_by_length)


def pad_batch(
    tokenizer: Any, batch: Sequence[Sequence[int]], device: Any
) -> tuple[torch.Tensor, torch.Tensor]:
    """(input ids, attention mask) of token rows right-padded with the tokenizer's pad id."""
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
        loss, n = lm_loss_sum(model, *pad_batch(tokenizer, batch, device))
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
