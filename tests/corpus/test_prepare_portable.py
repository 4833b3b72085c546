"""`protalign prepare` writes the same bytes whatever the checkout's path, TMPDIR, umask, hash seed and worker count.

DVC compares outputs by md5, so a byte that depends on where or how a run happened makes a fresh clone's
dvc.lock differ from the committed one although nothing changed (issue 14, item 7). Each run here is a separate
process in its own scratch root, as `dvc repro` would start it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
# six small PDB-format entries (one NMR, several with HETATM / altlocs), one mmCIF, one file that must be skipped
ENTRIES = ["1A8O", "1AAY", "1AB1", "1AFO", "1AHO", "1BEN", "1A7G"]


def _data(shared: Path, data: Path) -> None:
    (data / "structures").mkdir(parents=True)
    (data / "fasta").mkdir()
    lines = ["id\tstructure_file\tfasta_file\tformat\tsource"]
    for entry in ENTRIES:
        src = next((shared / "structures").glob(f"{entry}.*"))
        shutil.copy(src, data / "structures" / src.name)
        shutil.copy(shared / "fasta" / f"{entry}.fasta", data / "fasta" / f"{entry}.fasta")
        fmt = "cif" if ".cif" in src.name else "pdb"
        lines.append(f"{entry}\tstructures/{src.name}\tfasta/{entry}.fasta\t{fmt}\tshared")
    (data / "structures" / "9BAD.pdb").write_text("HEADER    NOT REALLY A STRUCTURE\nEND\n")
    lines.append("9BAD\tstructures/9BAD.pdb\t\tpdb\tmade-up")
    rows = sorted(lines[1:], reverse=True)  # not in id order: prepare must sort, not trust the manifest
    (data / "manifest.tsv").write_text("\n".join(lines[:1] + rows) + "\n")


def _prepare(root: Path, shared: Path, workers: int, env: dict[str, str], umask: int) -> dict[str, str]:
    """A scratch root with data/ + params.yaml; run `protalign prepare` in a child process; sha256 per output file."""
    _data(shared, root / "data")
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["prepare"]["workers"] = workers
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    full_env = dict(os.environ, PYTHONPATH=str(REPO / "src"), **env)
    old = os.umask(umask)  # inherited by the child; restored at once
    try:
        res = subprocess.run(
            [sys.executable, "-m", "protalign", "prepare"],
            cwd=root,
            env=full_env,
            capture_output=True,
            text=True,
        )
    finally:
        os.umask(old)
    assert res.returncode == 0, f"prepare failed in {root}:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    out = root / "prepared"
    return {
        str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(out.rglob("*"))
        if p.is_file()
    }


def test_prepare_bytes_do_not_depend_on_where_or_how_it_ran(shared_data, tmp_path):
    tmp_a, tmp_b = tmp_path / "tmp-a", tmp_path / "tmp b" / "deeper"
    tmp_a.mkdir()
    tmp_b.mkdir(parents=True)
    a = _prepare(
        tmp_path / "a",
        shared_data,
        workers=1,
        env={"TMPDIR": str(tmp_a), "PYTHONHASHSEED": "0", "LC_ALL": "C.UTF-8", "TZ": "UTC"},
        umask=0o022,
    )
    b = _prepare(
        tmp_path / "checkout two" / "nested" / "repo",
        shared_data,
        workers=2,
        env={"TMPDIR": str(tmp_b), "PYTHONHASHSEED": "4242", "LC_ALL": "C", "TZ": "Pacific/Kiritimati"},
        umask=0o077,
    )
    expected = {
        "proteins.parquet",
        "skipped.csv",
        "structures/ids.txt",
        "structures/meta.json",
        "structures/xyz.npy",
    }
    assert expected <= set(a), f"prepare wrote {sorted(a)}"
    assert set(a) == set(b), f"different files: {sorted(set(a) ^ set(b))}"
    differ = sorted(k for k in a if a[k] != b[k])
    assert not differ, f"bytes differ between the two runs: {differ}"
    ids = (tmp_path / "a" / "prepared" / "structures" / "ids.txt").read_text().split()
    assert len(ids) == len(ENTRIES), ids  # every real entry kept, so the comparison covers all of them
    assert "9BAD" in (tmp_path / "a" / "prepared" / "skipped.csv").read_text()
    root = str(tmp_path).encode()
    # a checkout's path inside an output would differ in every clone
    leaks = [
        p.name for p in (tmp_path / "a" / "prepared").rglob("*") if p.is_file() and root in p.read_bytes()
    ]
    assert not leaks, f"outputs holding the root path: {leaks}"
