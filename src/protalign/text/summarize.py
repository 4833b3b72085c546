"""summarize stage: one text description per protein (prepared/proteins.parquet -> prepared/summaries.parquet).

Writers are pluggable (`params.summarize.writer`): `template` is the study's sentence built from the PDB id,
length, chains, molecule names and organisms; `chat` (text/chat.py) has an OpenAI-compatible model rewrite it from
the entry's FASTA (`data/fasta/<ID>.fasta`), keeping the template's first sentence. The `writer` column says per
row who wrote it (`template`, `chat:<model>`, `template:fallback-<reason>`, `template:no-fasta`). Missing fields become an explicit "unknown" (never an empty slot) and are
counted, so a corpus with thin metadata is visible in the stage's log and return value.

Three more writers are text-shortcut ablations (how much of the alignment is a look-up of the id or the name):
`no_ids` (the template without the PDB id and without molecule names), `name_only` ("The protein is named
<names>.") and `length_only` ("The protein has <n> amino acids in <c> chain(s).").
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import pandas as pd

from protalign.errors import MissingArtifactError
from protalign.params import Params
from protalign.paths import Paths
from protalign.storage import write_parquet

log = logging.getLogger(__name__)

REQUIRED = ("id", "length", "n_chains", "molecule_names", "organisms")  # entity_* columns optional
UNKNOWN = "unknown"


@dataclass
class WriteResult:
    """Texts in input row order + how many rows lacked each field."""

    texts: list[str]
    missing: Counter = field(default_factory=Counter)
    labels: list[str] | None = None  # per-row writer label; None = the writer's name for every row


class Writer(Protocol):
    """Turns protein rows into descriptions; `name` is stored in the `writer` column."""

    name: str

    def write(self, proteins: pd.DataFrame) -> WriteResult: ...


def clean_list(value: Any) -> list[str]:
    """Distinct non-empty strings of a list-ish cell (list, array, str or missing), first occurrence order."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return []
    items: Iterable[Any] = (
        [value] if isinstance(value, str) else list(np.asarray(value, dtype=object).ravel())
    )
    seen: dict[str, None] = {}
    for item in items:
        if item is None or (isinstance(item, float) and math.isnan(item)):
            continue
        text = " ".join(str(item).split())
        if text and text.lower() not in {"none", "nan", "null", "?"}:
            seen.setdefault(text, None)
    return list(seen)


def _count(value: Any) -> int | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return int(number) if math.isfinite(number) and number >= 0 else None


def _chains_label(chains: str) -> str:
    """'A, B' -> 'Chains A, B' (the FASTA header's own wording, which the study's sentence quotes)."""
    n = len([c for c in chains.split(",") if c.strip()])
    return f"Chain {chains}" if n == 1 else f"Chains {chains}"


def _organism(name: str, taxid: str) -> str:
    """'Escherichia coli K12 (83333)', as the RCSB FASTA header writes it; the taxid only where known."""
    return f"{name} ({taxid})" if taxid and taxid.isdigit() else name


def _entities(row: pd.Series | dict) -> list[tuple[str, str, str]]:
    """(name, chains label, organism) per protein entity, padded with '' where a list is short or absent."""
    names = [" ".join(str(x).split()) for x in _as_list(row.get("molecule_names"))]
    orgs = [" ".join(str(x).split()) for x in _as_list(row.get("organisms"))]
    taxids = [str(x) for x in _as_list(row.get("taxids"))]
    chains = [str(x) for x in _as_list(row.get("entity_chains"))]
    n = max(len(names), len(orgs), len(chains))
    pad = lambda xs: xs + [""] * (n - len(xs))  # noqa: E731
    names, orgs, taxids, chains = pad(names), pad(orgs), pad(taxids), pad(chains)
    return [
        (
            names[i],
            _chains_label(chains[i]) if chains[i] else "",
            _organism(orgs[i], taxids[i]) if orgs[i] else "",
        )
        for i in range(n)
    ]


def _as_list(value: Any) -> list[Any]:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return []
    return [value] if isinstance(value, str) else list(np.asarray(value, dtype=object).ravel())


def sequence_length(row: pd.Series | dict) -> int | None:
    """The study's length: the FASTA sequences' total (protein entities); else the residues observed."""
    lengths = [_count(x) for x in _as_list(row.get("entity_lengths"))]
    if lengths and all(x for x in lengths):
        return int(sum(lengths))  # type: ignore[arg-type]
    return _count(row.get("length"))


def template_text(row: pd.Series | dict, missing: Counter | None = None, *, ids: bool = True) -> str:
    """The study's description (its summarize.py), e.g. 'The protein structure 11AS has a sequence length of:
    330 amino acids. Here is more information: The protein structure 11AS involves the following chains:
    Chains A, B. The protein is named ASPARAGINE SYNTHETASE. It was derived from the organism Escherichia coli
    K12 (83333).' The first sentence is the part a chat writer keeps verbatim. The study had GPT-4o describe
    multi-entity entries; the template lists their entities instead (one clause each).

    `ids=False` is the `no_ids` ablation: the same sentences without the PDB id and without any molecule name
    (entities are numbered instead), so the text keeps only length, chains and organism."""
    missing = Counter() if missing is None else missing
    subject = f"The protein structure {row['id']}" if ids else "The protein structure"
    length = sequence_length(row)
    ents = _entities(row)
    names = [e[0] for e in ents if e[0]]
    orgs = [e[2] for e in ents if e[2]]
    fields = [("length", length is None), ("n_chains", not any(e[1] for e in ents)), ("organisms", not orgs)]
    for key, absent in [*fields, *([("molecule_names", not names)] if ids else [])]:
        missing[key] += absent
    first = (
        f"{subject} has a sequence length of: {length} amino acids."
        if length is not None
        else f"{subject} has an unknown sequence length."
    )
    if len(ents) <= 1:
        name, chains, org = ents[0] if ents else ("", "", "")
        named = f"The protein is named {name}." if name else "The protein's name is not recorded."
        details = [
            f"{subject} involves the following chains: {chains or UNKNOWN}.",
            *([named] if ids else []),
            f"It was derived from the organism {org}." if org else "Its source organism is not recorded.",
        ]
    else:
        parts = [
            f"{(name or 'an unnamed entity') if ids else f'entity {i}'} "
            f"({'; '.join(x for x in (chains, org) if x) or 'no chain or organism recorded'})"
            for i, (name, chains, org) in enumerate(ents, start=1)
        ]
        details = [f"{subject} has {len(ents)} protein entities: {', '.join(parts)}."]
    return " ".join([first, "Here is more information:", *details])


def name_only_text(row: pd.Series | dict, missing: Counter | None = None) -> str:
    """`name_only` ablation: 'The protein is named <names>.' (every protein entity's name, '; '-separated)."""
    names = clean_list([e[0] for e in _entities(row)])
    if missing is not None:
        missing["molecule_names"] += not names
    return f"The protein is named {'; '.join(names)}." if names else "The protein's name is not recorded."


def chain_count(row: pd.Series | dict) -> int | None:
    """Chains the template lists (the FASTA entities' chain ids); else the prepared `n_chains`."""
    listed = [c for e in _entities(row) if e[1] for c in e[1].split(" ", 1)[1].split(",") if c.strip()]
    return len(listed) if listed else _count(row.get("n_chains"))


def length_only_text(row: pd.Series | dict, missing: Counter | None = None) -> str:
    """`length_only` ablation: 'The protein has <n> amino acids in <c> chain(s).' (n as the template's length)."""
    n, c = sequence_length(row), chain_count(row)
    if missing is not None:
        missing["length"] += n is None
        missing["n_chains"] += c is None
    amino = f"{n} amino acids" if n is not None else "an unknown number of amino acids"
    return f"The protein has {amino} in {c if c is not None else 'an unknown number of'} chain(s)."


class TemplateWriter:
    name = "template"

    def write(self, proteins: pd.DataFrame) -> WriteResult:
        missing: Counter = Counter()
        texts = [template_text(row, missing) for _, row in proteins.iterrows()]
        return WriteResult(texts=texts, missing=missing)


class ChatTemplateWriter:
    """Template first, then the chat model rewrites the rows it is asked to (see text/chat.py)."""

    name = "chat"

    def __init__(self, params: Any, paths: Any):
        from protalign.text.chat import ChatWriter

        self.chat = ChatWriter(params.summarize.chat, paths.cache / "chat", paths.data / "fasta")

    def write(self, proteins: pd.DataFrame) -> WriteResult:
        base = TemplateWriter().write(proteins)
        texts, labels = self.chat.write_rows(proteins["id"].astype(str).tolist(), base.texts)
        return WriteResult(texts=texts, missing=base.missing, labels=labels)


class RowWriter:
    """A writer that is one function of each row (the text-shortcut ablations)."""

    def __init__(self, name: str, text: Callable[[Any, Counter], str]) -> None:
        self.name, self.text = name, text

    def write(self, proteins: pd.DataFrame) -> WriteResult:
        missing: Counter = Counter()
        return WriteResult(texts=[self.text(row, missing) for _, row in proteins.iterrows()], missing=missing)


def _no_ids(row: Any, missing: Counter) -> str:
    return template_text(row, missing, ids=False)


# the ablations (README "Text-shortcut ablations"): what the alignment can learn from the name, the size alone, or
# everything but the id and the name
WRITERS: dict[str, Callable[[Any, Any], Writer]] = {
    "template": lambda params, paths: TemplateWriter(),
    "chat": ChatTemplateWriter,
    "no_ids": lambda params, paths: RowWriter("no_ids", _no_ids),
    "name_only": lambda params, paths: RowWriter("name_only", name_only_text),
    "length_only": lambda params, paths: RowWriter("length_only", length_only_text),
}


def get_writer(name: str, params: Any = None, paths: Any = None) -> Writer:
    try:
        factory = WRITERS[name]
    except KeyError:
        raise ValueError(f"summarize.writer: unknown writer {name!r}; available: {sorted(WRITERS)}") from None
    return factory(params, paths)


def summarize(proteins: pd.DataFrame, writer: Writer) -> tuple[pd.DataFrame, Counter]:
    """(id, text, writer) sorted by id, and the per-field missing counts."""
    absent = [c for c in REQUIRED if c not in proteins.columns]
    if absent:
        raise ValueError(f"proteins table lacks column(s) {absent} (see docs/ARCHITECTURE.md)")
    ids = proteins["id"].astype(str)
    if ids.duplicated().any():
        raise ValueError(f"proteins table has duplicate ids, e.g. {ids[ids.duplicated()].iloc[0]!r}")
    proteins = proteins.assign(id=ids).sort_values("id", kind="stable").reset_index(drop=True)
    result = writer.write(proteins)
    if len(result.texts) != len(proteins):
        raise RuntimeError(
            f"writer {writer.name!r} returned {len(result.texts)} texts for {len(proteins)} proteins"
        )
    labels = result.labels if result.labels is not None else [writer.name] * len(proteins)
    out = pd.DataFrame({"id": proteins["id"], "text": result.texts, "writer": labels})
    return out, result.missing


def run(params: Params, paths: Paths) -> pd.DataFrame:
    """Read proteins.parquet, write summaries.parquet atomically; logs how many rows lacked each field."""
    writer = get_writer(params.summarize.writer, params, paths)
    if not paths.proteins.exists():
        raise MissingArtifactError(f"no proteins table at {paths.proteins} (has the prepare stage run?)")
    out, missing = summarize(pd.read_parquet(paths.proteins), writer)
    write_parquet(paths.summaries, out)
    counts = {k: int(missing[k]) for k in REQUIRED[1:]}
    log.info("summarize: %d texts by %r; rows with a missing field: %s", len(out), writer.name, counts)
    if isinstance(writer, ChatTemplateWriter):
        _track_chat(params, paths, writer.chat.stats)
    return out


def _track_chat(params: Any, paths: Any, stats: Counter) -> None:
    """Chat runs cost money and can fall back: their counts go to MLflow (params hold the key's env NAME only)."""
    from dataclasses import asdict

    from protalign.tracking import mlflow_run

    log.info("summarize (chat): %s", dict(sorted(stats.items())))
    with mlflow_run(paths, "summarize", "chat", {"summarize": asdict(params.summarize)}) as run:
        run.log_metrics({f"n_{k.replace(':', '_')}": float(v) for k, v in stats.items()})
