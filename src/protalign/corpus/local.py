"""A user's own folder of structure files (`protalign fetch --source PATH`): find files, ids and FASTA.

Accepts either a flat folder of PDB/mmCIF files (gzipped or not) or a corpus-shaped folder with `structures/`
and `fasta/` subfolders (like ../shared/data). Every file seen is either an entry or a recorded skip.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from protalign.errors import MissingArtifactError

# extension -> (format, gzipped); anything else is reported, not guessed
EXTENSIONS = {
    ".pdb": ("pdb", False),
    ".ent": ("pdb", False),
    ".cif": ("cif", False),
    ".mmcif": ("cif", False),
    ".pdb.gz": ("pdb", True),
    ".ent.gz": ("pdb", True),
    ".cif.gz": ("cif", True),
    ".mmcif.gz": ("cif", True),
}
PDB_STEM_RE = re.compile(r"^(?:pdb)?([0-9][A-Za-z0-9]{3})$", re.I)
ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
FASTA_SUFFIXES = (".fasta", ".fa", ".faa")


@dataclass(frozen=True)
class LocalFile:
    id: str
    path: Path
    format: str
    gzipped: bool
    fasta: Path | None  # the user's FASTA for this entry, if any

    @property
    def file_name(self) -> str:
        return f"{self.id}.{self.format}" + (".gz" if self.gzipped else "")


def split_extension(name: str) -> tuple[str, str] | None:
    """('1abc', '.pdb.gz') for a known structure extension, else None."""
    lower = name.lower()
    for ext in sorted(EXTENSIONS, key=len, reverse=True):
        if lower.endswith(ext) and len(name) > len(ext):
            return name[: -len(ext)], ext
    return None


def entry_id(stem: str) -> str:
    """Upper-case PDB id when the stem is one (`1abc`, `pdb1abc`), else a sanitised stem; ValueError if none."""
    m = PDB_STEM_RE.match(stem)
    if m:
        return m.group(1).upper()
    cleaned = re.sub(r"[^A-Za-z0-9_-]+", "_", stem).strip("_-")[:64]
    if not ID_RE.match(cleaned):
        raise ValueError(f"no usable id in file name {stem!r}")
    return cleaned


def fasta_for(fasta_dir: Path | None, stem: str, ident: str) -> Path | None:
    """The FASTA file in `fasta_dir` named after the structure file's stem or its entry id, or None."""
    if fasta_dir is None or not fasta_dir.is_dir():
        return None
    for name in (stem, ident):
        for suffix in FASTA_SUFFIXES:
            p = fasta_dir / f"{name}{suffix}"
            if p.is_file():
                return p
    return None


def scan_folder(folder: str | Path) -> tuple[list[LocalFile], list[dict[str, str]]]:
    """Entries (first file wins per id, in sorted name order) and skips (`file`, `id`, `reason`)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise MissingArtifactError(f"--source {folder}: not a folder")
    struct_dir = folder / "structures" if (folder / "structures").is_dir() else folder
    fasta_dir = folder / "fasta"
    entries: list[LocalFile] = []
    skipped: list[dict[str, str]] = []
    seen: dict[str, str] = {}
    for path in sorted(struct_dir.iterdir(), key=lambda p: p.name):
        rel = path.name if struct_dir == folder else f"structures/{path.name}"
        if path.is_dir():
            if struct_dir == folder and path.name in ("fasta", "structures"):
                continue
            skipped.append({"file": rel, "id": "", "reason": "sub-folder (not searched)"})
            continue
        split = split_extension(path.name)
        if split is None:
            skipped.append(
                {
                    "file": rel,
                    "id": "",
                    "reason": f"not a structure file extension ({', '.join(sorted(EXTENSIONS))})",
                }
            )
            continue
        stem, ext = split
        try:
            ident = entry_id(stem)
        except ValueError as exc:
            skipped.append({"file": rel, "id": "", "reason": str(exc)})
            continue
        key = ident.upper()
        if key in seen:
            skipped.append({"file": rel, "id": ident, "reason": f"duplicate id (kept {seen[key]})"})
            continue
        seen[key] = rel
        fmt, gz = EXTENSIONS[ext]
        entries.append(LocalFile(ident, path, fmt, gz, fasta_for(fasta_dir, stem, ident)))
    if not entries and not skipped:
        raise ValueError(f"--source {folder}: no files found")
    return entries, skipped
