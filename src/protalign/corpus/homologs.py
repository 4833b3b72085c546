"""`search_homologs` stage: an all-vs-all MMseqs2 search of the prepared sequences -> prepared/homologs.parquet.

Why: the homology look-up reference (analysis/lookup.py) predicts a test protein's text from its most identical
TRAIN protein. One all-vs-all search, filtered per fold to that fold's train part, is the same as one search per
fold (every hit above the threshold is kept: `--max-seqs` is the corpus size) at a fraction of the cost.

A hit is what the homology split calls a homologue: MMseqs2's e-value threshold (E_VALUE) with `cluster.coverage`
of BOTH sequences (`--cov-mode 0`, as the `cluster` stage), at any identity. Self hits are dropped. Columns: `query`,
`target`, `identity` (MMseqs2 fident, 0..1), `evalue`, `bits`; sorted by query, then best hit first.
"""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from protalign.corpus.clusters import mmseqs_binary
from protalign.errors import InputError, MissingArtifactError, ToolError
from protalign.params import Params
from protalign.paths import Paths
from protalign.storage import write_parquet

E_VALUE = 1e-3  # MMseqs2's default search threshold: "no hit above the search threshold" means none below this
COLUMNS = ["query", "target", "identity", "evalue", "bits"]


def homologs_path(paths: Paths) -> Path:
    return paths.prepared / "homologs.parquet"


def order_hits(hits: pd.DataFrame) -> pd.DataFrame:
    """Self hits out; per query the best first (identity, then bits, then target id: a deterministic tie break)."""
    hits = hits[hits["query"] != hits["target"]]
    hits = hits.sort_values(["query", "identity", "bits", "target"], ascending=[True, False, False, True])
    hits = hits.drop_duplicates(["query", "target"])  # mmseqs may report two alignments of one pair
    return hits.reset_index(drop=True)[COLUMNS]


def search_all_vs_all(sequences: Mapping[str, str], coverage: float, threads: int = 1) -> pd.DataFrame:
    """Every (query, target) hit of `mmseqs easy-search` of the sequences against themselves, self hits dropped."""
    if len(sequences) < 2:
        raise InputError(f"need >= 2 sequences to search for homologues, got {len(sequences)}")
    bad = [i for i, s in sequences.items() if not s or any(c.isspace() for c in s) or ">" in i or " " in i]
    if bad:
        raise InputError(f"cannot search {len(bad)} entries with empty sequences or odd ids, e.g. {bad[:3]}")
    with tempfile.TemporaryDirectory(prefix="protalign-mmseqs-search-") as tmp:
        work = Path(tmp)
        fasta = work / "in.fasta"
        fasta.write_text("".join(f">{i}\n{sequences[i]}\n" for i in sorted(sequences)))
        cmd = [
            mmseqs_binary(), "easy-search", str(fasta), str(fasta), str(work / "hits.m8"), str(work / "tmp"),
            "--format-output", "query,target,fident,evalue,bits", "-e", str(E_VALUE), "-c", str(coverage),
            "--cov-mode", "0", "--max-seqs", str(len(sequences)), "--threads", str(threads), "-v", "1",
        ]  # fmt: skip
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            raise ToolError(f"mmseqs easy-search failed ({res.returncode}): {res.stderr[-2000:]}")
        out = work / "hits.m8"
        if not out.exists() or out.stat().st_size == 0:
            return pd.DataFrame({c: pd.Series(dtype=t) for c, t in zip(COLUMNS, (str, str, float, float, float),
                                                                        strict=True)})  # fmt: skip
        hits = pd.read_csv(out, sep="\t", header=None, names=COLUMNS, dtype={"query": str, "target": str})
    return order_hits(hits)


def run(params: Params, paths: Paths) -> pd.DataFrame:
    if not paths.proteins.exists():
        raise MissingArtifactError(f"no {paths.proteins} (run the prepare stage first)")
    proteins = pd.read_parquet(paths.proteins, columns=["id", "sequence"])
    sequences = dict(zip(proteins["id"].astype(str), proteins["sequence"].astype(str), strict=True))
    hits = search_all_vs_all(sequences, params.cluster.coverage, params.cluster.threads)
    write_parquet(homologs_path(paths), hits)
    with_hit = hits["query"].nunique()
    print(f"search_homologs: {len(hits)} hits; {with_hit} of {len(sequences)} proteins have >= 1 homologue "
          f"(e-value <= {E_VALUE}, coverage >= {params.cluster.coverage})")  # fmt: skip
    return hits
