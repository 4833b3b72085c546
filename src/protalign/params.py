"""Typed view of params.yaml: the only module that reads it, so a typo in a key fails loudly and early."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


@dataclass(frozen=True)
class FetchParams:
    source: str = "bundled"
    n: int = 20000
    workers: int = 4


@dataclass(frozen=True)
class PrepareParams:
    max_residues: int = 10000
    max_file_mb: float = 100.0
    min_residues: int = 10
    workers: int = 2


@dataclass(frozen=True)
class SplitParams:
    method: str = "random"
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    seed: int = 0


@dataclass(frozen=True)
class SummarizeParams:
    writer: str = "template"


@dataclass(frozen=True)
class EmbedTextParams:
    llms: tuple[str, ...] = ("smollm2-135m",)
    pooling: str = "last_token"
    batch_size: int = 16
    max_length: int = 256
    device: str = "cpu"
    threads: int = 2


@dataclass(frozen=True)
class GraphParams:
    radius: float = 10.0
    knn: int = 10
    seq_offsets: int = 2
    min_seq_sep: int = 5


@dataclass(frozen=True)
class GATParams:
    hidden: int = 8
    heads: int = 8
    layers: int = 2
    dropout: float = 0.1
    dihedrals: bool = True


@dataclass(frozen=True)
class GearNetEdgeParams:
    hidden_dims: tuple[int, ...] = (512, 512)
    readout: str = "sum"
    checkpoint: str | None = None


@dataclass(frozen=True)
class StructureTrainParams:
    epochs: int = 10
    lr: float = 3e-3
    batch_size: int = 8
    mask_rate: float = 0.15
    max_residues: int = 512
    seed: int = 0


@dataclass(frozen=True)
class StructureParams:
    gdms: tuple[str, ...] = ("gat",)
    graph: GraphParams = field(default_factory=GraphParams)
    gat: GATParams = field(default_factory=GATParams)
    gearnet_edge: GearNetEdgeParams = field(default_factory=GearNetEdgeParams)
    pooling: str = "mean"
    threads: int = 1
    train: StructureTrainParams = field(default_factory=StructureTrainParams)


@dataclass(frozen=True)
class AlignParams:
    dim: int | None = None
    structure_layers: int = 1
    hidden_dim: int = 512
    loss: str = "study"
    temperature: float = 0.2
    lr: float = 1e-3
    batch_size: int = 32
    epochs: int = 40
    seed: int = 0


@dataclass(frozen=True)
class EvaluateParams:
    ks: tuple[int, ...] = (1, 5, 10)


@dataclass(frozen=True)
class Params:
    seed: int = 0
    fetch: FetchParams = field(default_factory=FetchParams)
    prepare: PrepareParams = field(default_factory=PrepareParams)
    split: SplitParams = field(default_factory=SplitParams)
    summarize: SummarizeParams = field(default_factory=SummarizeParams)
    embed_text: EmbedTextParams = field(default_factory=EmbedTextParams)
    structure: StructureParams = field(default_factory=StructureParams)
    align: AlignParams = field(default_factory=AlignParams)
    evaluate: EvaluateParams = field(default_factory=EvaluateParams)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _build(cls: type, data: Any, where: str) -> Any:
    """Recursively build a frozen dataclass from a mapping; unknown keys are an error, lists become tuples."""
    if not dataclasses.is_dataclass(cls):
        return tuple(data) if isinstance(data, list) else data
    if data is None:
        return cls()
    if not isinstance(data, dict):
        raise ValueError(f"params: '{where}' must be a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ValueError(f"params: unknown key(s) {unknown} in '{where or 'top level'}'")
    kwargs = {}
    for name, value in data.items():
        f = fields[name]
        sub = f.default_factory if f.default_factory is not dataclasses.MISSING else None  # type: ignore[misc]
        sub_cls = sub if dataclasses.is_dataclass(sub) else type(None)
        kwargs[name] = _build(sub_cls, value, f"{where}.{name}".lstrip("."))
    return cls(**kwargs)


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read params.yaml (missing file -> defaults) into a validated, immutable Params."""
    path = Path(path)
    data = yaml.safe_load(path.read_text()) if path.exists() else {}
    return _build(Params, data or {}, "")
