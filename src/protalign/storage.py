"""Atomic, deterministic writes and the embedding store shared by every stage.

DVC deletes a stage's outputs before rerunning it and a crash must never leave a half-written artifact, so every
writer goes through a temporary sibling that is renamed into place. DVC hashes every output, so each writer here
also makes its bytes a function of the content alone: no file name, path, time, hash seed or library-version
metadata inside (docs/PORTABILITY.md). Embeddings are one float array + an id index per model (few large files:
DVC and S3 are slow with many small ones).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from protalign.errors import MissingArtifactError


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB chunks (model files and sdists can be gigabytes)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success move it into place (file or directory)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent)) / path.name
    try:
        yield tmp
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp.parent, ignore_errors=True)


def write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | Path, text: str) -> None:
    """UTF-8 and "\\n" line ends whatever the locale: the bytes are the text's."""
    write_bytes(path, text.encode("utf-8"))


def json_text(obj: Any) -> str:
    """Deterministic JSON (sorted keys, 2-space indent, trailing newline) so identical results give identical bytes."""
    return json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n"


def write_json(path: str | Path, obj: Any) -> None:
    write_text(path, json_text(obj))


PARQUET_OPTIONS: dict[str, Any] = {"compression": "zstd", "write_statistics": False}


def parquet_bytes(data: Any) -> bytes:
    """A pyarrow Table or pandas DataFrame as Parquet bytes that depend on the rows only (and pyarrow's version).

    DataFrames lose their index (`preserve_index=False`) and the b"pandas" schema metadata, which records the
    pandas version and would change the bytes between installs without changing a value. No column statistics
    (not read by any stage), zstd compression.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = data if isinstance(data, pa.Table) else pa.Table.from_pandas(data, preserve_index=False)
    metadata = {k: v for k, v in (table.schema.metadata or {}).items() if k != b"pandas"}
    table = table.replace_schema_metadata(metadata or None)
    buf = io.BytesIO()
    pq.write_table(table, buf, **PARQUET_OPTIONS)
    return buf.getvalue()


def write_parquet(path: str | Path, data: Any) -> None:
    write_bytes(path, parquet_bytes(data))


def torch_bytes(obj: Any) -> bytes:
    """`torch.save` into memory. Written to a file, the zip's record folder is named after the file; in memory it
    is always "archive", so the bytes do not depend on the output's (or the temporary file's) name."""
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def save_torch(path: str | Path, obj: Any) -> None:
    write_bytes(path, torch_bytes(obj))


def canonical_json_file(path: str | Path, set_keys: Sequence[str] = ()) -> None:
    """Rewrite a JSON file another library wrote: sorted keys, and the lists under `set_keys` sorted.

    Libraries that keep a set (PEFT's `target_modules`) dump it in set order, which follows the per-process string
    hash seed: the same config gave different bytes from run to run.
    """
    obj = json.loads(Path(path).read_text(encoding="utf-8"))
    for key in set_keys:
        if isinstance(obj.get(key), list):
            obj[key] = sorted(obj[key], key=str)
    write_json(path, obj)


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text())


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


@dataclass
class EmbeddingSet:
    """Rows of `vectors` belong to `ids` in order; `meta` says what produced them (model, pooling, dim)."""

    ids: list[str]
    vectors: np.ndarray
    meta: dict[str, Any]

    def __post_init__(self) -> None:
        if self.vectors.ndim != 2 or self.vectors.shape[0] != len(self.ids):
            raise ValueError(f"embedding array {self.vectors.shape} does not match {len(self.ids)} ids")
        if len(set(self.ids)) != len(self.ids):
            raise ValueError("embedding ids are not unique")

    def subset(self, ids: Sequence[str]) -> np.ndarray:
        """Rows for `ids` in the given order (KeyError names the first missing id)."""
        index = {i: n for n, i in enumerate(self.ids)}
        missing = [i for i in ids if i not in index]
        if missing:
            raise KeyError(f"{len(missing)} id(s) have no embedding, e.g. {missing[:3]}")
        return self.vectors[[index[i] for i in ids]]


EMBEDDING_FILE = "embeddings.npy"
IDS_FILE = "ids.txt"
META_FILE = "meta.json"


def save_embeddings(directory: str | Path, emb: EmbeddingSet, dtype: str = "float32") -> None:
    """Write `directory/` = embeddings.npy + ids.txt + meta.json, atomically as one directory."""
    if not np.isfinite(emb.vectors).all():
        bad = [emb.ids[i] for i in np.where(~np.isfinite(emb.vectors).all(axis=1))[0][:5]]
        raise ValueError(f"non-finite embedding values for {bad}; refusing to store them")
    with atomic_path(directory) as tmp:
        tmp.mkdir()
        np.save(tmp / EMBEDDING_FILE, emb.vectors.astype(dtype), allow_pickle=False)
        (tmp / IDS_FILE).write_bytes("".join(f"{i}\n" for i in emb.ids).encode("utf-8"))
        meta = dict(emb.meta, n=len(emb.ids), dim=int(emb.vectors.shape[1]), dtype=dtype)
        (tmp / META_FILE).write_bytes(json_text(meta).encode("utf-8"))


def load_embeddings(directory: str | Path) -> EmbeddingSet:
    directory = Path(directory)
    if not (directory / EMBEDDING_FILE).exists():
        raise MissingArtifactError(f"no embeddings in {directory} (has its embed stage run?)")
    vectors = np.load(directory / EMBEDDING_FILE, allow_pickle=False).astype(np.float32)
    ids = (directory / IDS_FILE).read_text().split()
    meta = json.loads((directory / META_FILE).read_text())
    return EmbeddingSet(ids=ids, vectors=vectors, meta=meta)
