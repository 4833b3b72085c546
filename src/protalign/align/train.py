"""`align` stage: train the text and structure projection heads of one (LLM, GDM) pair on the train split.

Model selection uses the validation loss (the heads of the best epoch are restored and saved); the test split is
never touched here. Proteins one of the two embedding sets lacks are dropped from every split and counted.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from protalign.align.heads import HeadConfig, StructureHead, TextHead, build_heads, save_heads
from protalign.align.losses import LOSSES, alignment_loss
from protalign.errors import MissingArtifactError
from protalign.params import AlignParams, Params
from protalign.paths import Paths, pair_id
from protalign.storage import EmbeddingSet, load_embeddings, read_json

SPLITS = ("train", "val", "test")
EpochCallback = Callable[[int, float, float], None]  # (epoch, train_loss, val_loss)


def load_split(paths: Paths) -> dict[str, list[str]]:
    """The one shared split; overlapping parts would leak test proteins into training, so they are an error."""
    if not paths.split.exists():
        raise MissingArtifactError(f"no split at {paths.split} (has the split stage run?)")
    raw = read_json(paths.split)
    split = {}
    for name in SPLITS:
        if name not in raw:
            raise ValueError(f"{paths.split} has no '{name}' list")
        split[name] = sorted(raw[name])
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        both = set(split[a]) & set(split[b])
        if both:
            raise ValueError(
                f"split parts '{a}' and '{b}' overlap in {len(both)} id(s), e.g. {sorted(both)[:3]}"
            )
    return split


@dataclass
class PairData:
    """Both embedding sets of a pair and the split restricted to proteins both sides embedded."""

    llm: str
    gdm: str
    text: EmbeddingSet
    structure: EmbeddingSet
    split: dict[str, list[str]]
    missing_text: list[str]
    missing_structure: list[str]

    @property
    def n_missing(self) -> int:
        """Split proteins dropped because at least one side has no embedding for them."""
        return len(set(self.missing_text) | set(self.missing_structure))

    def arrays(self, part: str) -> tuple[np.ndarray, np.ndarray]:
        ids = self.split[part]
        return self.text.subset(ids), self.structure.subset(ids)

    def counts(self) -> dict[str, int]:
        return {
            "n_train": len(self.split["train"]),
            "n_val": len(self.split["val"]),
            "n_test": len(self.split["test"]),
            "n_missing": self.n_missing,
            "n_missing_text": len(self.missing_text),
            "n_missing_structure": len(self.missing_structure),
        }


def load_pair(paths: Paths, llm: str, gdm: str) -> PairData:
    text = load_embeddings(paths.text_embeddings(llm))
    structure = load_embeddings(paths.structure_embeddings(gdm))
    split = load_split(paths)
    text_ids, structure_ids = set(text.ids), set(structure.ids)
    all_split = sorted(i for part in SPLITS for i in split[part])
    kept = {part: [i for i in ids if i in text_ids and i in structure_ids] for part, ids in split.items()}
    return PairData(
        llm=llm,
        gdm=gdm,
        text=text,
        structure=structure,
        split=kept,
        missing_text=[i for i in all_split if i not in text_ids],
        missing_structure=[i for i in all_split if i not in structure_ids],
    )


def head_config(align: AlignParams, text_dim: int, structure_dim: int) -> HeadConfig:
    """align.dim null means the LLM's own width, as in the study."""
    return HeadConfig(
        text_dim=text_dim,
        structure_dim=structure_dim,
        dim=align.dim if align.dim is not None else text_dim,
        structure_layers=align.structure_layers,
        hidden_dim=align.hidden_dim,
    )


@dataclass
class FitResult:
    text_head: TextHead
    structure_head: StructureHead
    history: list[dict[str, float]]  # one {"epoch", "train_loss", "val_loss"} per epoch
    best_epoch: int
    best_val_loss: float


@torch.no_grad()
def evaluate_loss(
    text_head: TextHead,
    structure_head: StructureHead,
    text: np.ndarray,
    structure: np.ndarray,
    loss: str,
    tau: float,
) -> float:
    """Loss over the whole set as ONE batch (every other protein is a negative): deterministic, order-free."""
    t = text_head(torch.as_tensor(text, dtype=torch.float32))
    s = structure_head(torch.as_tensor(structure, dtype=torch.float32))
    return float(alignment_loss(loss, s, t, tau))


class FusedAdam:
    """`torch.optim.Adam(fused=True)` (default betas/eps, no weight decay), the same fused kernel, without
    `torch.optim`: constructing an Optimizer imports torch._dynamo (~1.2 s here), paid again by every align stage and
    every CV worker process. Fused: one pass over the weights per step (the unfused CPU step was ~8x slower)."""

    def __init__(self, params: list[torch.Tensor], lr: float, betas=(0.9, 0.999), eps: float = 1e-8) -> None:
        self.params, self.lr, self.betas, self.eps = list(params), float(lr), betas, eps
        self.exp_avg = [torch.zeros_like(p) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in self.params]
        self.steps = [torch.zeros((), dtype=torch.float32) for _ in self.params]

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        live = [i for i, p in enumerate(self.params) if p.grad is not None]  # as torch: no grad, no step
        steps = [self.steps[i] for i in live]
        torch._foreach_add_(steps, 1)
        torch._fused_adam_(
            [self.params[i] for i in live], [self.params[i].grad for i in live],
            [self.exp_avg[i] for i in live], [self.exp_avg_sq[i] for i in live], [], steps,
            lr=self.lr, beta1=self.betas[0], beta2=self.betas[1], weight_decay=0.0, eps=self.eps,
            amsgrad=False, maximize=False, grad_scale=None, found_inf=None,
        )  # fmt: skip


def fit_heads(
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    config: HeadConfig,
    align: AlignParams,
    on_epoch: EpochCallback | None = None,
) -> FitResult:
    """Adam on in-batch contrastive loss; `train`/`val` are (text, structure) arrays with paired rows.

    Shuffling uses its own generator seeded from align.seed. A trailing batch of one protein is skipped (it has no
    negatives, so its loss is identically zero and carries no signal).
    """
    if align.loss not in LOSSES:
        raise ValueError(f"unknown align.loss {align.loss!r}; expected one of {LOSSES}")
    if align.patience is not None and align.patience < 1:
        raise ValueError(f"align.patience must be >= 1 or null, got {align.patience}")
    if align.epochs < 1 or align.batch_size < 2:
        raise ValueError(
            f"align needs epochs >= 1 and batch_size >= 2, got {align.epochs}, {align.batch_size}"
        )
    x_text = torch.as_tensor(train[0], dtype=torch.float32)
    x_struct = torch.as_tensor(train[1], dtype=torch.float32)
    n = x_text.shape[0]
    if n < 2 or val[0].shape[0] < 2:
        raise ValueError(f"alignment needs >= 2 train and >= 2 val proteins, got {n} and {val[0].shape[0]}")
    # the matrices are tiny: one thread is faster, and with other jobs on the machine extra threads thrash (40x)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _fit(x_text, x_struct, val, config, align, on_epoch)
    finally:
        torch.set_num_threads(threads)


def _fit(
    x_text: torch.Tensor,
    x_struct: torch.Tensor,
    val: tuple[np.ndarray, np.ndarray],
    config: HeadConfig,
    align: AlignParams,
    on_epoch: EpochCallback | None,
) -> FitResult:
    n = x_text.shape[0]
    text_head, structure_head = build_heads(config, align.seed)
    params = list(text_head.parameters()) + list(structure_head.parameters())
    optimizer = FusedAdam(params, lr=align.lr)
    generator = torch.Generator().manual_seed(align.seed)
    history: list[dict[str, float]] = []
    best_epoch, best_val, best_state = 0, float("inf"), None
    for epoch in range(1, align.epochs + 1):
        text_head.train()
        structure_head.train()
        order = torch.randperm(n, generator=generator)
        total, seen = 0.0, 0
        for start in range(0, n, align.batch_size):
            idx = order[start : start + align.batch_size]
            if len(idx) < 2:
                continue
            optimizer.zero_grad()
            loss = alignment_loss(
                align.loss, structure_head(x_struct[idx]), text_head(x_text[idx]), align.temperature
            )
            loss.backward()
            optimizer.step()
            total += loss.item() * len(idx)
            seen += len(idx)
        text_head.eval()
        structure_head.eval()
        train_loss = total / seen
        val_loss = evaluate_loss(text_head, structure_head, val[0], val[1], align.loss, align.temperature)
        history.append({"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss})
        if on_epoch is not None:
            on_epoch(epoch, train_loss, val_loss)
        if val_loss < best_val:
            best_epoch, best_val = epoch, val_loss
            best_state = (copy.deepcopy(text_head.state_dict()), copy.deepcopy(structure_head.state_dict()))
        elif align.patience is not None and epoch - best_epoch >= align.patience and best_state is not None:
            break  # early stop: `patience` epochs without a better validation loss
    if best_state is None:
        raise RuntimeError("validation loss was never finite; training diverged (lower align.lr?)")
    text_head.load_state_dict(best_state[0])
    structure_head.load_state_dict(best_state[1])
    return FitResult(text_head, structure_head, history, best_epoch, best_val)


def train_pair(
    params: Params, paths: Paths, llm: str, gdm: str, on_epoch: EpochCallback | None = None
) -> dict[str, Any]:
    """Load, fit, save `models/heads/<pair>.pt`; returns the info dict stored beside the weights."""
    data = load_pair(paths, llm, gdm)
    config = head_config(params.align, data.text.vectors.shape[1], data.structure.vectors.shape[1])
    fit = fit_heads(data.arrays("train"), data.arrays("val"), config, params.align, on_epoch=on_epoch)
    info: dict[str, Any] = {
        "llm": llm,
        "gdm": gdm,
        **{k: v for k, v in dataclasses.asdict(params.align).items() if k not in ("dim",)},
        "best_epoch": fit.best_epoch,
        "best_val_loss": fit.best_val_loss,
        "history": fit.history,
        **data.counts(),
    }
    save_heads(paths.heads(llm, gdm), fit.text_head, fit.structure_head, config, info)
    return info


def run(params: Params, paths: Paths, llm: str, gdm: str) -> dict[str, Any]:
    """The DVC stage: train one pair inside an MLflow run (per-epoch curves, final values)."""
    # imported here (not at module top) so training and its tests work without the MLflow layer
    from protalign.tracking import mlflow_run

    flat = {f"align.{k}": ("null" if v is None else v) for k, v in dataclasses.asdict(params.align).items()}
    flat.update({"llm": llm, "gdm": gdm})
    with mlflow_run(paths, stage="align", item=pair_id(llm, gdm), params=flat) as tracker:

        def log_epoch(epoch: int, train_loss: float, val_loss: float) -> None:
            tracker.log_metrics({"train_loss": train_loss, "val_loss": val_loss}, step=epoch)

        info = train_pair(params, paths, llm, gdm, on_epoch=log_epoch)
        final = {
            k: info[k] for k in ("best_epoch", "best_val_loss", "n_train", "n_val", "n_test", "n_missing")
        }
        tracker.log_metrics({k: float(v) for k, v in final.items()})
    return info
