"""Packed structure store: every usable entry's residues and heavy atoms in a handful of memory-mapped arrays.

One `.npy` per field (concatenated over entries) + offset arrays + `ids.txt`. Few large files keep DVC fast, `.npy`
can be memory-mapped (so `get(id)` is a cheap slice even for 20k entries) and `np.save` output is byte-identical for
identical input (DVC hashes it). Strings are fixed-width ASCII bytes so they memory-map too.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from protalign.errors import MissingArtifactError
from protalign.storage import atomic_path

AA_ORDER = "ACDEFGHIKLMNPQRSTVWY"
UNKNOWN_AA = 20
FORMAT_VERSION = 1

# field -> (dtype on disk, per "residue" or "atom", trailing shape)
_FIELDS: dict[str, tuple[str, str, tuple[int, ...]]] = {
    "chain": ("S4", "residue", ()),
    "resnum": ("<i4", "residue", ()),
    "resname": ("S5", "residue", ()),
    "aa": ("i1", "residue", ()),
    "ca": ("<f4", "residue", (3,)),
    "atom_name": ("S4", "atom", ()),
    "element": ("S2", "atom", ()),
    "xyz": ("<f4", "atom", (3,)),
}
IDS_FILE = "ids.txt"
META_FILE = "meta.json"
RESIDUE_PTR = "residue_ptr.npy"  # entry -> residue offsets (N+1)
ATOM_PTR = "atom_ptr.npy"  # residue -> atom offsets (R_total+1), global


@dataclass
class ProteinStructure:
    """One entry's protein residues (model 1, residues with CA) and their heavy atoms."""

    id: str
    chain: np.ndarray  # (R,) str
    resnum: np.ndarray  # (R,) int32
    resname: np.ndarray  # (R,) str, modified residues mapped to their parent
    aa: np.ndarray  # (R,) int64, index into AA_ORDER, 20 = unknown
    ca: np.ndarray  # (R, 3) float32
    atom_ptr: np.ndarray  # (R+1,) int64 offsets into the atom arrays
    atom_name: np.ndarray  # (A,) str
    element: np.ndarray  # (A,) str
    xyz: np.ndarray  # (A, 3) float32

    def __post_init__(self) -> None:
        r, a = len(self.resnum), len(self.atom_name)
        for name in ("chain", "resname", "aa", "ca"):
            if len(getattr(self, name)) != r:
                raise ValueError(
                    f"{self.id}: {name} has {len(getattr(self, name))} rows, expected {r} residues"
                )
        if len(self.element) != a or len(self.xyz) != a:
            raise ValueError(f"{self.id}: atom arrays disagree in length")
        if len(self.atom_ptr) != r + 1 or self.atom_ptr[0] != 0 or self.atom_ptr[-1] != a:
            raise ValueError(f"{self.id}: atom_ptr does not cover {a} atoms of {r} residues")

    def __len__(self) -> int:
        return len(self.resnum)

    @property
    def chain_index(self) -> np.ndarray:
        """Integer chain id per residue (0, 1, ... in order of first appearance), for graph builders."""
        _, first, inverse = np.unique(self.chain, return_index=True, return_inverse=True)
        order = np.argsort(np.argsort(first))  # rank of each unique chain by first appearance
        return order[inverse].astype(np.int64)

    @property
    def sequence(self) -> str:
        return "".join(AA_ORDER[i] if i < UNKNOWN_AA else "X" for i in self.aa)


def _encode(values: np.ndarray, dtype: str, field: str, entry: str) -> np.ndarray:
    """Fixed-width ASCII; a value that would be truncated is an error, never silently cut."""
    width = np.dtype(dtype).itemsize
    arr = np.asarray(values).astype(str)
    if arr.size and np.char.str_len(arr).max() > width:
        raise ValueError(
            f"{entry}: {field} value longer than {width} characters: {arr[np.char.str_len(arr) > width][:3]}"
        )
    return arr.astype(dtype)


class StructureStoreWriter:
    """Streams entries (in the order they should be stored) into raw files, then packs them into `.npy`."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._ctx = atomic_path(self.path)
        self._tmp = self._ctx.__enter__()
        self._tmp.mkdir()
        self._raw = {f: open(self._tmp / f"{f}.raw", "wb") for f in _FIELDS}  # noqa: SIM115
        self.ids: list[str] = []
        self._n_res = [0]
        self._atom_ptr = [np.zeros(1, np.int64)]
        self._n_atoms = 0

    def add(self, s: ProteinStructure) -> None:
        if self.ids and s.id <= self.ids[-1]:
            raise ValueError(
                f"store entries must be added in strictly increasing id order ({s.id} after {self.ids[-1]})"
            )
        for field, (dtype, _, _) in _FIELDS.items():
            values = getattr(s, field)
            arr = (
                _encode(values, dtype, field, s.id)
                if dtype.startswith("S")
                else np.asarray(values, dtype=dtype)
            )
            self._raw[field].write(np.ascontiguousarray(arr).tobytes())
        self._atom_ptr.append(np.asarray(s.atom_ptr[1:], np.int64) + self._n_atoms)
        self._n_atoms += len(s.atom_name)
        self._n_res.append(self._n_res[-1] + len(s))
        self.ids.append(s.id)

    def close(self) -> None:
        """Pack the raw files into `.npy`s and move the directory into place."""
        for fh in self._raw.values():
            fh.close()
        sizes = {"residue": self._n_res[-1], "atom": self._n_atoms}
        for field, (dtype, kind, shape) in _FIELDS.items():
            raw = self._tmp / f"{field}.raw"
            n = sizes[kind]
            if n:
                arr = np.memmap(raw, dtype=dtype, mode="r", shape=(n, *shape))
            else:
                arr = np.zeros((0, *shape), dtype=dtype)
            np.save(self._tmp / f"{field}.npy", arr, allow_pickle=False)
            del arr
            raw.unlink()
        np.save(self._tmp / RESIDUE_PTR, np.asarray(self._n_res, np.int64), allow_pickle=False)
        np.save(self._tmp / ATOM_PTR, np.concatenate(self._atom_ptr), allow_pickle=False)
        (self._tmp / IDS_FILE).write_text("".join(f"{i}\n" for i in self.ids))
        meta = {
            "format_version": FORMAT_VERSION,
            "n_entries": len(self.ids),
            **{f"n_{k}s": v for k, v in sizes.items()},
        }
        (self._tmp / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        self._ctx.__exit__(None, None, None)

    def abort(self) -> None:
        for fh in self._raw.values():
            fh.close()
        shutil.rmtree(self._tmp.parent, ignore_errors=True)


def write_store(path: str | Path, structures: Iterable[ProteinStructure]) -> None:
    """Write `structures` (sorted by id) as a packed store at `path`, atomically."""
    writer = StructureStoreWriter(path)
    try:
        for s in structures:
            writer.add(s)
    except BaseException:
        writer.abort()
        raise
    writer.close()


class StructureStore:
    """Read-only view of a packed store; arrays are memory-mapped, so opening and `get` are cheap."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not (self.path / META_FILE).exists():
            raise MissingArtifactError(f"no structure store at {self.path} (has the prepare stage run?)")
        meta = json.loads((self.path / META_FILE).read_text())
        if meta.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"{self.path}: store format {meta.get('format_version')}, expected {FORMAT_VERSION}"
            )
        self.ids: list[str] = (self.path / IDS_FILE).read_text().split()
        self._index = {i: n for n, i in enumerate(self.ids)}
        self._res_ptr = np.load(self.path / RESIDUE_PTR)
        self._atom_ptr = np.load(self.path / ATOM_PTR, mmap_mode="r")
        self._arrays = {f: np.load(self.path / f"{f}.npy", mmap_mode="r") for f in _FIELDS}
        if len(self._res_ptr) != len(self.ids) + 1:
            raise ValueError(f"{self.path}: {len(self.ids)} ids but {len(self._res_ptr) - 1} entries")

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, id: str) -> bool:
        return id in self._index

    def __iter__(self):
        return (self.get(i) for i in self.ids)

    def get(self, id: str) -> ProteinStructure:
        if id not in self._index:
            raise KeyError(f"{id!r} is not in the structure store {self.path} ({len(self.ids)} entries)")
        n = self._index[id]
        r0, r1 = int(self._res_ptr[n]), int(self._res_ptr[n + 1])
        ptr = np.array(self._atom_ptr[r0 : r1 + 1], dtype=np.int64)
        a0, a1 = int(ptr[0]), int(ptr[-1])
        res = {f: self._arrays[f][r0:r1] for f, (_, kind, _) in _FIELDS.items() if kind == "residue"}
        atom = {f: self._arrays[f][a0:a1] for f, (_, kind, _) in _FIELDS.items() if kind == "atom"}
        return ProteinStructure(
            id=id,
            chain=res["chain"].astype(str),
            resnum=np.array(res["resnum"], dtype=np.int32),
            resname=res["resname"].astype(str),
            aa=np.array(res["aa"], dtype=np.int64),
            ca=np.array(res["ca"], dtype=np.float32),
            atom_ptr=ptr - a0,
            atom_name=atom["atom_name"].astype(str),
            element=atom["element"].astype(str),
            xyz=np.array(atom["xyz"], dtype=np.float32),
        )
