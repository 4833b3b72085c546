"""Typed view of params.yaml, the single source of every value (the dataclasses here carry no defaults).

`load_params` checks each value against its annotation (a bool is no int, an int is a float, `Literal` lists the
choices, `Range` bounds a number or a list's length) and rejects unknown and missing keys: a bad file fails before
any stage starts, naming the key path, the value and what is allowed. A new parameter goes in params.yaml,
tests/pipeline_params.yaml and an annotated field here; the checking itself is in params_schema.py."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml

from protalign.params_schema import ParamsError, Range, build_dataclass, show_value

# Reusable annotated types: the schema below reads as "what is allowed".
Count = Annotated[int, Range(1)]  # sizes, epochs, workers: >= 1
NonNegInt = Annotated[int, Range(0)]  # 0 switches the feature off
Seed = Annotated[int, Range(0)]  # numpy generators reject negative seeds
Positive = Annotated[float, Range(0, lo_open=True)]  # learning rates, temperatures, timeouts
NonNegFloat = Annotated[float, Range(0)]
Fraction = Annotated[float, Range(0, 1, lo_open=True, hi_open=True)]  # (0, 1)
Rate = Annotated[float, Range(0, 1, hi_open=True)]  # dropout, mask rate: [0, 1)
Identity = Annotated[float, Range(0, 1, lo_open=True)]  # sequence identity / coverage: (0, 1]
Share = Annotated[float, Range(0, 1)]  # a share that may be 0 or 1: [0, 1]
Device = Literal["cpu", "cuda", "auto"]
Pooling = Literal["mean", "max", "meanmax"]
Names = tuple[str, ...]
NonEmpty = Range(1)  # on a list: at least one item
HeadLayers = Annotated[int, Range(1, 3)]  # the study's 1..3 linear layers in the structure head


@dataclass(frozen=True)
class FetchParams:
    source: str  # bundled | PATH to a folder of structures | rcsb
    n: Count
    workers: Count


@dataclass(frozen=True)
class PrepareParams:
    max_residues: Count
    max_file_mb: Positive
    min_residues: Count
    workers: Count
    max_skipped_fraction: Share  # share of entries prepare/embed stages may skip before they fail


@dataclass(frozen=True)
class SplitParams:
    method: Literal["random", "cluster"]  # cluster: whole MMseqs2 clusters stay on one side
    fractions: tuple[Fraction, Fraction, Fraction]  # train / val / test, summing to 1
    seed: Seed
    cluster_identity: Identity  # one of cluster.identities


@dataclass(frozen=True)
class ClusterParams:  # MMseqs2 easy-cluster settings (homology split and rarity)
    identities: Annotated[tuple[Identity, ...], NonEmpty]
    coverage: Identity
    threads: Count


@dataclass(frozen=True)
class ChatParams:
    base_url: str
    model: str
    api_key_env: str | None  # NAME of the env var holding the key, never the key
    entries: Literal["multi", "all"]
    max_concurrency: Count
    timeout: Positive
    max_retries: NonNegInt
    backoff: NonNegFloat
    temperature: NonNegFloat | None  # null: the server's default
    max_tokens: Count
    max_words: Count


@dataclass(frozen=True)
class SummarizeParams:
    writer: Literal["template", "chat", "no_ids", "name_only", "length_only"]
    chat: ChatParams


@dataclass(frozen=True)
class EmbedTextParams:
    llms: Names
    pooling: Literal["auto", "last_token", "mean"]
    batch_size: Count
    batch_tokens: Count
    max_length: Count
    dtype: Literal["float32", "bfloat16", "auto"]
    device: Device
    quantize_4bit: bool
    threads: Count


@dataclass(frozen=True)
class LoraParams:
    r: Count
    alpha: Count
    dropout: Rate
    target_modules: Annotated[Names, NonEmpty]


@dataclass(frozen=True)
class FinetuneParams:
    llms: Names
    lora: LoraParams
    prompt_format: Literal["study", "chat_template"]
    epochs: Count
    lr: Positive
    batch_size: Count
    max_length: Count
    quantize: Literal["auto", "none", "4bit"]
    device: Device
    threads: Count
    seed: Seed
    group_by_length: bool  # length-grouped batches (less padding; other batch compositions)


@dataclass(frozen=True)
class GraphParams:
    radius: NonNegFloat  # 0: no radius edges
    knn: NonNegInt  # 0: no kNN edges
    seq_offsets: NonNegInt
    min_seq_sep: NonNegInt


@dataclass(frozen=True)
class GATParams:
    hidden: Count
    heads: Count
    layers: Count
    dropout: Rate
    dihedrals: bool


@dataclass(frozen=True)
class GearNetEdgeParams:
    hidden_dims: Annotated[tuple[Count, ...], NonEmpty]
    readout: Literal["sum", "mean", "max", "meanmax"]
    checkpoint: str | None


@dataclass(frozen=True)
class GVPParams:
    knn: Count
    node_scalar: Count
    node_vector: Count
    edge_scalar: Count
    edge_vector: Count
    layers: Count
    dropout: Rate
    out_dim: Count


@dataclass(frozen=True)
class ScanNetParams:
    weights: str | None  # path to the released ScanNet_PPI_noMSA.h5 (null: train on the corpus)
    pooling: Pooling | None  # null = structure.pooling
    max_residues: NonNegInt  # longer proteins are skipped with a reason (0 = no limit)


@dataclass(frozen=True)
class StructureTrainParams:
    epochs: Count
    lr: Positive
    batch_size: Count
    mask_rate: Rate
    max_residues: Count
    tasks: Annotated[tuple[Literal["residue_type", "distance", "angle", "ec"], ...], NonEmpty]
    ec_level: Annotated[int, Range(1, 4)]
    pairs_per_protein: Count
    seed: Seed


@dataclass(frozen=True)
class StructureParams:
    gdms: Names  # each names a settings section below (dvc.yaml reads structure.<gdm>)
    graph: GraphParams
    gat: GATParams
    gearnet_edge: GearNetEdgeParams
    gvp: GVPParams
    scannet: ScanNetParams
    pooling: Pooling
    threads: Count
    device: Device
    weights: str  # trained | random | path to a checkpoint ({gdm} is replaced)
    max_embed_gb: Positive
    train: StructureTrainParams
    residue_types: bool  # false: the sequence-blind ablation (structure/blind.py)


@dataclass(frozen=True)
class AlignParams:
    llms: Names  # text models paired with every GDM: embed_text.llms and/or <finetune.llm>+lora (empty: all)
    dim: Count | None
    structure_layers: HeadLayers
    hidden_dim: Count | None  # null: equal steps from the GDM width to the head width (study's rule)
    loss: Literal["study", "clip"]
    temperature: Positive
    lr: Positive
    batch_size: Count
    epochs: Count
    patience: Count | None  # stop after this many epochs without a better val loss (null: never)
    seed: Seed


@dataclass(frozen=True)
class EvaluateParams:
    ks: Annotated[tuple[Count, ...], NonEmpty]


@dataclass(frozen=True)
class AnalysisParams:  # cross-validation of the heads and the statistics of the findings
    folds: Annotated[int, Range(2)]
    methods: Annotated[tuple[Literal["random", "cluster"], ...], NonEmpty]  # fold-drawing methods evaluated
    seeds: Annotated[tuple[Seed, ...], NonEmpty]  # head-training seeds (mean +- sd)
    depths: Annotated[tuple[HeadLayers, ...], NonEmpty]  # structure-head layers swept (RQ5)
    n_boot: Count
    ci: Fraction
    correction: Literal["holm", "bh", "bonferroni", "none"]
    bins: Count  # quantile bins of the property plots
    seed: Seed
    workers: Count  # processes fitting the (seed, fold) heads in parallel (1 thread each)


@dataclass(frozen=True)
class RayParams:  # used when compute.engine is ray
    address: str | None  # null: env RAY_ADDRESS, else a local cluster started in this process
    cpus: Positive  # per worker (task or actor)
    gpus: NonNegFloat  # per worker; > 1 lets one LLM actor span several GPUs (device_map auto)
    memory_gb: NonNegFloat  # per worker, reserved with Ray's scheduler (0: no reservation)
    max_retries: NonNegInt  # a shard whose worker died is rerun this many times


@dataclass(frozen=True)
class ComputeParams:  # where the corpus-sized stages run; outputs are byte-identical either way
    engine: Literal["local", "ray"]
    shard_size: Count  # ids per shard (unit of distribution and of resume)
    threads: Count  # torch threads in each Ray worker (1 = the local engine's per-process count)
    ray: RayParams


@dataclass(frozen=True)
class Params:
    seed: Seed
    fetch: FetchParams
    prepare: PrepareParams
    split: SplitParams
    cluster: ClusterParams
    summarize: SummarizeParams
    embed_text: EmbedTextParams
    finetune: FinetuneParams
    structure: StructureParams
    align: AlignParams
    evaluate: EvaluateParams
    analysis: AnalysisParams
    compute: ComputeParams

    def pair_llms(self) -> tuple[str, ...]:
        """Text models paired with every GDM: `align.llms`, or every embedded LLM when that list is empty."""
        return self.align.llms or self.embed_text.llms

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _cross_checks(p: Params) -> None:
    """Rules that span keys: fractions sum to 1, referenced models and identities exist, no duplicate names."""
    if not math.isclose(sum(p.split.fractions), 1.0, abs_tol=1e-9):
        raise ParamsError("split.fractions", f"{show_value(p.split.fractions)} must sum to 1")
    if p.split.cluster_identity not in p.cluster.identities:
        ids = show_value(p.cluster.identities)
        raise ParamsError("split.cluster_identity", f"{p.split.cluster_identity} is not in cluster.identities {ids}")
    lists = {"embed_text.llms": p.embed_text.llms, "finetune.llms": p.finetune.llms, "align.llms": p.align.llms}
    for key, names in {**lists, "structure.gdms": p.structure.gdms}.items():
        if len(set(names)) != len(names):
            raise ParamsError(key, f"{show_value(names)} lists a name twice")
    s = p.structure  # dvc.yaml reads structure.<gdm> for each GDM
    if bad := [g for g in s.gdms if g in ("graph", "train") or not dataclasses.is_dataclass(getattr(s, g, None))]:
        raise ParamsError("structure.gdms", f"{bad} have no settings section structure.<gdm>")
    known = set(p.embed_text.llms) | {f"{m}+lora" for m in p.finetune.llms}
    if unknown := [m for m in p.pair_llms() if m not in known]:
        raise ParamsError("align.llms", f"{unknown} not in embed_text.llms or <finetune.llms>+lora {sorted(known)}")


def parse_params(data: Any, source: str = "params") -> Params:
    """Validated Params from the parsed YAML mapping; `source` (the file name) prefixes the error message."""
    try:
        params = build_dataclass(Params, data, "")
        _cross_checks(params)
    except ParamsError as exc:
        raise ParamsError(exc.key, exc.problem, source) from None
    return params


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate a params file: every key present and well-typed, or a ParamsError saying which is not."""
    path = Path(path)
    if not path.is_file():
        raise ParamsError("(file)", f"no params file at {path}", str(path))
    return parse_params(yaml.safe_load(path.read_text()), str(path))
