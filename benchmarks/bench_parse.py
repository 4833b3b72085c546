"""Parse-speed benchmark: gemmi (the prepare parser) vs Biopython 1.88 on the real corpus.

Both sides do the same work: decompress, parse, then walk model 1 protein residues and collect heavy-atom names,
elements and coordinates. Speed is reported per CPU second (robust to other load on the machine) and per wall
second. Usage: python benchmarks/bench_parse.py [DATA_DIR] [--limit N]
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import time
import warnings
from pathlib import Path

from protalign.corpus.structures import StructureError, parse_structure

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def biopython_parse(path: Path, entry_id: str) -> int:
    """Biopython equivalent of structures.extract_protein (highest-occupancy altloc is Biopython's default)."""
    from Bio.PDB import MMCIFParser, PDBParser
    from Bio.PDB.Polypeptide import is_aa

    raw = path.read_bytes()
    text = (gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw).decode("utf-8", errors="replace")
    parser = MMCIFParser(QUIET=True) if ".cif" in path.name else PDBParser(QUIET=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        st = parser.get_structure(entry_id, io.StringIO(text))
    model = next(iter(st))
    n_res = 0
    names, elements, xyz = [], [], []
    for chain in model:
        for res in chain:
            if not is_aa(res, standard=False) or "CA" not in res:
                continue
            n_res += 1
            for atom in res:
                if atom.element in ("H", "D"):
                    continue
                names.append(atom.get_name())
                elements.append(atom.element)
                xyz.append(atom.coord)
    return n_res


def gemmi_parse(path: Path, entry_id: str) -> int:
    return len(parse_structure(path, entry_id).structure)


def bench(name: str, fn, entries: list[tuple[str, Path]]) -> dict:
    failures: list[str] = []
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for entry_id, path in entries:
        try:
            fn(path, entry_id)
        except StructureError:
            pass  # an unusable entry is still parsed work (prepare records it as skipped)
        except Exception as e:  # noqa: BLE001 - a parser crash is what we count here
            failures.append(f"{entry_id}: {type(e).__name__}: {str(e)[:80]}")
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    n = len(entries)
    print(
        f"{name:10s} {n} files  {n / cpu:7.1f} structures/CPU-s  {n / wall:7.1f} structures/wall-s  "
        f"({cpu:.1f} CPU-s, {wall:.1f} s wall)  crashes: {len(failures)}"
    )
    for f in failures[:5]:
        print(f"    {f}")
    return {"name": name, "n": n, "per_cpu_s": n / cpu, "per_wall_s": n / wall, "crashes": failures}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("data", nargs="?", default=str(DEFAULT_DATA))
    ap.add_argument("--limit", type=int, default=0, help="first N entries only (0 = all)")
    ap.add_argument("--skip-biopython", action="store_true")
    args = ap.parse_args()
    data = Path(args.data)
    rows = list(csv.DictReader((data / "manifest.tsv").open(), delimiter="\t"))
    key = "id" if "id" in rows[0] else "pdb_id"
    entries = [(r[key], data / r["structure_file"]) for r in rows]
    if args.limit:
        entries = entries[: args.limit]
    bench("gemmi", gemmi_parse, entries)
    if not args.skip_biopython:
        bench("biopython", biopython_parse, entries)


if __name__ == "__main__":
    main()
