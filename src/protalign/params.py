"""Typed view of params.yaml, the single source of every value (the dataclasses here carry no defaults).

`load_params` checks each value against its annotation (a bool is no int, an int is a float, `Literal` lists the
choices, `Range` bounds a number or a list's length) and rejects unknown and missing keys: a bad file fails before
any stage starts, naming the key path, the value and what is allowed. A new parameter goes in params.yaml,
tests/pipeline_params.yaml and an annotated field here; the checking itself is in params_schema.py."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml

from protalign.params_schema import REST, ParamsError, Range, build_dataclass, show_value

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
Weights = str  # structure.<gdm>.weights: trained | random | path to a checkpoint or released file ({gdm} replaced)


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
    weights: Weights


@dataclass(frozen=True)
class GearNetEdgeParams:
    hidden_dims: Annotated[tuple[Count, ...], NonEmpty]
    readout: Literal["sum", "mean", "max", "meanmax"]
    checkpoint: str | None
    weights: Weights


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
    weights: Weights


@dataclass(frozen=True)
class ScanNetParams:
    weights: Weights  # or the released ScanNet_PPI_noMSA.h5 (imported, frozen: no training)
    pooling: Pooling | None  # null = structure.pooling
    max_residues: NonNegInt  # longer proteins are skipped with a reason (0 = no limit)


@dataclass(frozen=True)
class ProteinMPNNParams:
    variant: Literal["v_48_002", "v_48_010", "v_48_020", "v_48_030"]  # released vanilla weights (training noise Å)
    weights: Weights  # trained = import the released weights of the package (no training)


@dataclass(frozen=True)
class CompositionParams:  # the no-3D floor (structure/composition.py); nothing trained
    parts: Annotated[tuple[Literal["aa", "length", "chains"], ...], NonEmpty]


@dataclass(frozen=True)
class Foldseek3DiParams:  # Foldseek's 3Di alphabet via mini3di (structure/foldseek3di.py); nothing trained
    parts: Annotated[tuple[Literal["states", "bigrams", "aa_pairs"], ...], NonEmpty]


@dataclass(frozen=True)
class Variant:
    """A named variant of a GDM architecture (structure.<alias> with a `base` key): its own settings section."""

    base: str
    settings: Any  # the base's section dataclass (e.g. ScanNetParams)


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
    proteinmpnn: ProteinMPNNParams
    composition: CompositionParams
    foldseek3di: Foldseek3DiParams
    pooling: Pooling
    threads: Count
    device: Device
    max_embed_gb: Positive
    train: StructureTrainParams
    residue_types: bool  # false: the sequence-blind ablation (structure/blind.py)
    # every other key of `structure` is a variant: structure.<alias>: {base: <gdm>, <the base's keys>}
    variants: dict[str, Any] = field(metadata={REST: True})

    def base(self, gdm: str) -> str:
        """The architecture a GDM name runs: itself, or a variant's base."""
        return self.variants[gdm].base if gdm in self.variants else gdm

    def section(self, gdm: str) -> Any:
        """The settings section of a GDM name (a variant's own section, never its base's)."""
        if gdm in self.variants:
            return self.variants[gdm].settings
        section = getattr(self, gdm, None) if gdm not in ("graph", "train", "variants") else None
        if not dataclasses.is_dataclass(section):
            raise ParamsError(f"structure.{gdm}", "no settings section (a GDM or a variant with a base)")
        return section

    def for_gdm(self, gdm: str) -> StructureParams:
        """These params as the base architecture's code reads them: a variant's section in its base's place."""
        if gdm not in self.variants:
            return self
        return dataclasses.replace(self, **{self.variants[gdm].base: self.variants[gdm].settings})


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
class VerdictParams:  # the rules that turn intervals into verdicts (analysis/verdicts.py; printed in findings.md)
    min_effect: NonNegFloat  # smallest mean per-protein reciprocal-rank difference that counts as an effect
    band_rho: Annotated[float, Range(0, 1, lo_open=True)]  # |rho| below which a correlation counts as no effect
    alpha: Fraction  # family-wise error of one finding's intervals (level 1 - alpha before the correction)
    correction: Literal["holm", "bh", "bonferroni", "none"]  # across the comparisons of one finding / the tests


@dataclass(frozen=True)
class AnalysisParams:  # cross-validation of the heads and the statistics of the findings
    folds: Annotated[int, Range(2)]
    methods: Annotated[tuple[Literal["random", "cluster"], ...], NonEmpty]  # fold-drawing methods evaluated
    seeds: Annotated[tuple[Seed, ...], NonEmpty]  # head-training seeds of crossval (>= 5 at study scale)
    depth_seeds: Annotated[tuple[Seed, ...], NonEmpty]  # head-training seeds of head_depth (2 suffice there)
    control: bool  # fit the shuffled-pairing control heads beside every real fit (the headline needs them)
    depths: Annotated[tuple[HeadLayers, ...], NonEmpty]  # structure-head layers swept (RQ5)
    n_boot: Count
    ci: Fraction
    verdicts: VerdictParams
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
        """The mapping params.yaml holds (variants back in place as structure.<alias>: {base, ...})."""
        out = dataclasses.asdict(self)
        structure = out["structure"]
        for alias, variant in structure.pop("variants").items():
            structure[alias] = {"base": variant["base"], **variant["settings"]}
        return out


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
    if bad := [g for g in s.gdms if g in ("graph", "train", "variants") or not _has_section(s, g)]:
        raise ParamsError("structure.gdms", f"{bad} have no settings section structure.<gdm>")
    known = set(p.embed_text.llms) | {f"{m}+lora" for m in p.finetune.llms}
    if unknown := [m for m in p.pair_llms() if m not in known]:
        raise ParamsError("align.llms", f"{unknown} not in embed_text.llms or <finetune.llms>+lora {sorted(known)}")


def _has_section(s: StructureParams, gdm: str) -> bool:
    return gdm in s.variants or dataclasses.is_dataclass(getattr(s, gdm, None))


def _typed_variants(params: Params) -> Params:
    """Each structure.<alias> checked as {base: <a GDM section>, ...exactly the base's keys}."""
    s = params.structure
    sections = [f.name for f in dataclasses.fields(StructureParams) if f.name not in ("graph", "train", "variants")]
    sections = [n for n in sections if dataclasses.is_dataclass(getattr(s, n))]
    out = {}
    for alias, raw in s.variants.items():
        key = f"structure.{alias}"
        if not isinstance(raw, dict) or "base" not in raw:
            raise ParamsError(key, f"unknown key; a variant is a mapping {{base: one of {sections}, <its keys>}}")
        base = raw["base"]
        if base not in sections:
            raise ParamsError(f"{key}.base", f"{show_value(base)} is not allowed; allowed: one of {sections}")
        cls = type(getattr(s, base))
        settings = build_dataclass(cls, {k: v for k, v in raw.items() if k != "base"}, key)
        out[alias] = Variant(base=base, settings=settings)
    return dataclasses.replace(params, structure=dataclasses.replace(s, variants=out))


def parse_params(data: Any, source: str = "params") -> Params:
    """Validated Params from the parsed YAML mapping; `source` (the file name) prefixes the error message."""
    try:
        params = _typed_variants(build_dataclass(Params, data, ""))
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
