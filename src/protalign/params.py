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
    # share of entries prepare/embed stages may skip before failing; the default mirrors params.yaml only until
    # the dataclass defaults are removed
    max_skipped_fraction: float = 0.25


@dataclass(frozen=True)
class SplitParams:
    method: str = "random"  # random | cluster (whole MMseqs2 clusters stay on one side)
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    seed: int = 0
    cluster_identity: float = 0.3  # which of cluster.identities the cluster method (and its folds) use


@dataclass(frozen=True)
class ClusterParams:
    """MMseqs2 easy-cluster settings (homology split and rarity)."""

    identities: tuple[float, ...] = (0.3, 0.5)
    coverage: float = 0.8
    threads: int = 1


@dataclass(frozen=True)
class ChatParams:
    base_url: str = "https://api.openai.com/v1"
    model: str = "gpt-4o"
    api_key_env: str | None = "OPENAI_API_KEY"  # the key itself is read from this env var, never from params
    entries: str = "multi"
    max_concurrency: int = 4
    timeout: float = 60.0
    max_retries: int = 5
    backoff: float = 1.0
    temperature: float | None = None
    max_tokens: int = 300
    max_words: int = 120


@dataclass(frozen=True)
class SummarizeParams:
    writer: str = "template"
    chat: ChatParams = field(default_factory=ChatParams)


@dataclass(frozen=True)
class EmbedTextParams:
    llms: tuple[str, ...] = ("smollm2-135m",)
    pooling: str = "auto"
    batch_size: int = 16
    batch_tokens: int = 4096
    max_length: int = 256
    dtype: str = "float32"
    device: str = "cpu"
    quantize_4bit: bool = False
    threads: int = 2


@dataclass(frozen=True)
class LoraParams:
    r: int = 8
    alpha: int = 16
    dropout: float = 0.05
    target_modules: tuple[str, ...] = ("q_proj", "v_proj")


@dataclass(frozen=True)
class FinetuneParams:
    llms: tuple[str, ...] = ("smollm2-135m",)
    lora: LoraParams = field(default_factory=LoraParams)
    prompt_format: str = "study"
    epochs: int = 3
    lr: float = 2e-4
    batch_size: int = 8
    max_length: int = 256
    quantize: str = "auto"
    device: str = "cpu"
    threads: int = 2
    seed: int = 0
    group_by_length: bool = False  # length-grouped batches (less padding; other batch compositions)


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
class GVPParams:
    knn: int = 30
    node_scalar: int = 100
    node_vector: int = 16
    edge_scalar: int = 32
    edge_vector: int = 1
    layers: int = 3
    dropout: float = 0.1
    out_dim: int = 100


@dataclass(frozen=True)
class ScanNetParams:
    weights: str | None = None  # path to the released ScanNet_PPI_noMSA.h5 (null: train on the corpus)
    pooling: str | None = None  # mean | max | meanmax; null = structure.pooling
    max_residues: int = 0  # proteins longer than this are skipped with a reason (0 = no limit)


@dataclass(frozen=True)
class StructureTrainParams:
    epochs: int = 10
    lr: float = 3e-3
    batch_size: int = 8
    mask_rate: float = 0.15
    max_residues: int = 350
    tasks: tuple[str, ...] = ("residue_type", "distance", "angle")
    ec_level: int = 1
    pairs_per_protein: int = 64
    seed: int = 0


@dataclass(frozen=True)
class StructureParams:
    gdms: tuple[str, ...] = ("gat",)
    graph: GraphParams = field(default_factory=GraphParams)
    gat: GATParams = field(default_factory=GATParams)
    gearnet_edge: GearNetEdgeParams = field(default_factory=GearNetEdgeParams)
    gvp: GVPParams = field(default_factory=GVPParams)
    scannet: ScanNetParams = field(default_factory=ScanNetParams)
    pooling: str = "mean"
    threads: int = 1
    device: str = "cpu"
    weights: str = "trained"
    max_embed_gb: float = 4.0
    train: StructureTrainParams = field(default_factory=StructureTrainParams)
    # false: the sequence-blind ablation (structure/blind.py); no default, params.yaml holds the value
    residue_types: bool = field(kw_only=True)


@dataclass(frozen=True)
class AlignParams:
    llms: tuple[
        str, ...
    ] = ()  # text models paired with every GDM: embed_text.llms and/or '<finetune.llm>+lora'
    dim: int | None = None
    structure_layers: int = 1
    hidden_dim: int | None = None  # null: equal steps from the GDM width to the head width (study's rule)
    loss: str = "study"
    temperature: float = 0.2
    lr: float = 1e-3
    batch_size: int = 32
    epochs: int = 40
    patience: int | None = None  # stop after this many epochs without a better val loss (null: never)
    seed: int = 0


@dataclass(frozen=True)
class EvaluateParams:
    ks: tuple[int, ...] = (1, 5, 10)


@dataclass(frozen=True)
class AnalysisParams:
    """Cross-validation of the heads and the statistics of the findings."""

    folds: int = 5
    methods: tuple[str, ...] = ("random", "cluster")  # fold-drawing methods evaluated
    seeds: tuple[int, ...] = (0, 1, 2)  # head-training seeds (mean +- sd)
    depths: tuple[int, ...] = (1, 2, 3)  # structure-head layers swept (RQ5)
    n_boot: int = 2000
    ci: float = 0.95
    correction: str = "holm"  # holm | bh | bonferroni | none
    bins: int = 5  # quantile bins of the property plots
    seed: int = 0
    workers: int = 2  # processes fitting the (seed, fold) heads in parallel (1 thread each)


@dataclass(frozen=True)
class Params:
    seed: int = 0
    fetch: FetchParams = field(default_factory=FetchParams)
    prepare: PrepareParams = field(default_factory=PrepareParams)
    split: SplitParams = field(default_factory=SplitParams)
    cluster: ClusterParams = field(default_factory=ClusterParams)
    summarize: SummarizeParams = field(default_factory=SummarizeParams)
    embed_text: EmbedTextParams = field(default_factory=EmbedTextParams)
    finetune: FinetuneParams = field(default_factory=FinetuneParams)
    structure: StructureParams = field(default_factory=StructureParams)
    align: AlignParams = field(default_factory=AlignParams)
    evaluate: EvaluateParams = field(default_factory=EvaluateParams)
    analysis: AnalysisParams = field(default_factory=AnalysisParams)

    def pair_llms(self) -> tuple[str, ...]:
        """Text models paired with every GDM: `align.llms`, or every embedded LLM when that list is empty."""
        return self.align.llms or self.embed_text.llms

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
    params = _build(Params, data or {}, "")
    known = set(params.embed_text.llms) | {f"{m}+lora" for m in params.finetune.llms}
    unknown = [m for m in params.pair_llms() if m not in known]
    if unknown:
        raise ValueError(
            f"params: align.llms {unknown} are neither in embed_text.llms nor '<finetune.llms>+lora' ({sorted(known)})"
        )
    return params
