"""Shards of sorted ids, and the ledger of finished shards (the resume cache of the sharded stages).

A shard's result is saved by the driver (atomic rename) and only then recorded in `ledger.jsonl`, one line per
shard: a shard recomputed after a dead worker or an interruption is never recorded twice, and a rerun reuses every
recorded shard instead of recomputing it.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Shard:
    index: int
    ids: tuple[str, ...]

    @property
    def name(self) -> str:
        return f"shard-{self.index:06d}"


def cut(ids: Iterable[str], shard_size: int) -> list[Shard]:
    """Consecutive shards of at most `shard_size` ids, cut from the SORTED ids (so they do not depend on input order)."""
    if shard_size < 1:
        raise ValueError(f"compute.shard_size must be >= 1, got {shard_size}")
    ordered = sorted(ids)
    if len(set(ordered)) != len(ordered):
        raise ValueError("duplicate ids cannot be sharded")
    return [Shard(i // shard_size, tuple(ordered[i : i + shard_size])) for i in range(0, len(ordered), shard_size)]


def content_key(*parts: Any) -> str:
    """16 hex digits naming a resume cache: a hash of everything that changes a stage's shard results."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def group(items: Iterable[Any], size_of, shard_size: int) -> Iterable[list[Any]]:
    """Consecutive groups of whole items (batches) holding about `shard_size` ids each: a shard never splits a
    batch, so the batches (and the floats) are the same whatever the shard size and engine."""
    cur: list[Any] = []
    n = 0
    for item in items:
        cur.append(item)
        n += size_of(item)
        if n >= shard_size:
            yield cur
            cur, n = [], 0
    if cur:
        yield cur


class ShardLedger:
    """Finished shards of one stage run under `root` (a directory in the cache keyed by everything that changes
    the results): `get(name)` -> saved result or None; `put(name, ids, result)` saves it and records it once."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.path = self.root / "ledger.jsonl"
        self._done: dict[str, list[str]] = {}
        if self.path.exists():
            for line in self.path.read_text().splitlines():
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:  # a line cut by an interruption: that shard is simply redone
                    continue
                if (self.root / f"{rec['shard']}.pkl").exists():
                    self._done[rec["shard"]] = rec["ids"]

    def done(self) -> dict[str, list[str]]:
        return dict(self._done)

    def get(self, name: str, ids: Sequence[str] | None = None) -> Any | None:
        if name not in self._done or (ids is not None and list(ids) != self._done[name]):
            return None
        try:
            with open(self.root / f"{name}.pkl", "rb") as fh:
                return pickle.load(fh)  # our own cache, written by put() below
        except (OSError, EOFError, pickle.UnpicklingError):
            return None

    def put(self, name: str, ids: Sequence[str], result: Any) -> None:
        if name in self._done:
            return
        tmp = self.root / f".{name}.tmp"
        with open(tmp, "wb") as fh:
            pickle.dump(result, fh, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, self.root / f"{name}.pkl")
        with open(self.path, "a") as fh:
            fh.write(json.dumps({"shard": name, "ids": list(ids)}) + "\n")
        self._done[name] = list(ids)

    @staticmethod
    def keep_record(root: Path) -> None:
        """Before `root` (a spent resume cache) is deleted: keep its ledgers as `<root>.ledger.jsonl`, the record
        of which shard computed which ids (the worker-kill test reads it)."""
        root = Path(root)
        lines = [f.read_text() for f in sorted(root.glob("*/ledger.jsonl")) + sorted(root.glob("ledger.jsonl"))]
        if lines:
            root.with_name(root.name + ".ledger.jsonl").write_text("".join(lines))
