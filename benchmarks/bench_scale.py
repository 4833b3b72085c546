"""Scale benchmark: the corpus-sized stages on the local engine vs Ray (1 and 2 workers, cluster already running).

    python benchmarks/bench_scale.py [--data ../shared/data] [--prepare-n 20000] [--embed-n 2000]
                                     [--workdir DIR] [--json docs/benchmarks/scale.json]

A synthetic corpus is made from the real PDB-format entries of --data: entry i is source entry i mod m, rigidly
moved (seeded random rotation + translation, so no two copies share coordinates) and re-id'd (S000000, ...).
`prepare` runs on --prepare-n entries; `embed_structure@gearnet_edge` (seeded random weights: speed does not
depend on training) and `embed_text@smollm2-135m` (template summaries) on the first --embed-n. Configurations:
local with 1 core (1 parser process, 1 torch thread), Ray with 1 worker (a 1-CPU node) and Ray with 2 workers
(two 1-CPU nodes). Each run is a fresh process with an empty resume cache (converted LLM files are shared);
outputs are compared byte for byte with the local run. Ray overhead = Ray 1 worker / local 1 core - 1 (same cores);
scaling efficiency = rate(2 workers) / (2 x rate(1 worker)). The JSON (docs/benchmarks/scale.json) feeds
docs/BENCHMARKS.md and the generated block of docs/SCALING.md (python -m protalign.docs_render).
"""

from __future__ import annotations

import argparse
import datetime
import gzip
import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "compute"))  # the Ray tests' cluster starter (stops by process id)
STAGES = ("prepare", "embed_structure", "embed_text")
CONFIGS = {"local-1": (None, 1), "ray-1": (1, 1), "ray-2": (2, 1)}  # name: (Ray nodes or None, threads)


# --------------------------------------------------------------------------------------------------------------
# the synthetic corpus


def rigid_motion(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A uniformly random rotation (QR of a Gaussian matrix, sign-fixed, det +1) and a translation within 50 Å."""
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q, rng.uniform(-50, 50, size=3)


def move_pdb(text: str, rot: np.ndarray, shift: np.ndarray, old_id: str, new_id: str) -> str:
    """PDB text with ATOM/HETATM coordinates (columns 31-54) moved and the id in HEADER replaced."""
    lines = text.splitlines()
    atoms = [i for i, line in enumerate(lines) if line.startswith(("ATOM  ", "HETATM"))]
    xyz = np.array([[float(lines[i][30:38]), float(lines[i][38:46]), float(lines[i][46:54])] for i in atoms])
    if len(atoms):
        moved = xyz @ rot.T + shift
        for i, (x, y, z) in zip(atoms, moved, strict=True):
            lines[i] = f"{lines[i][:30]}{x:8.3f}{y:8.3f}{z:8.3f}{lines[i][54:]}"
    if lines and lines[0].startswith("HEADER"):
        lines[0] = lines[0].replace(old_id, new_id)
    return "\n".join(lines) + "\n"


def make_corpus(shared: Path, data: Path, n: int, seed: int = 0) -> list[str]:
    """n re-id'd, rigidly moved copies of shared's PDB-format entries in data/ (manifest.tsv, structures/, fasta/)."""
    rows = [line.split("\t") for line in (shared / "manifest.tsv").read_text().splitlines()[1:]]
    sources = sorted((r[0], r[1], r[2]) for r in rows if r[3] == "pdb" and r[2])  # with a FASTA file
    (data / "structures").mkdir(parents=True, exist_ok=True)
    (data / "fasta").mkdir(exist_ok=True)
    rng = np.random.default_rng(seed)
    texts: dict[str, tuple[str, str]] = {}
    manifest, ids = ["id\tstructure_file\tfasta_file\tformat\tsource"], []
    for i in range(n):
        src_id, structure, fasta = sources[i % len(sources)]
        if src_id not in texts:
            texts[src_id] = (gzip.decompress((shared / structure).read_bytes()).decode(), (shared / fasta).read_text())
        pdb, fa = texts[src_id]
        new_id = f"S{i:06d}"
        rot, shift = rigid_motion(rng)
        (data / "structures" / f"{new_id}.pdb").write_text(move_pdb(pdb, rot, shift, src_id, new_id))
        (data / "fasta" / f"{new_id}.fasta").write_text(fa.replace(f">{src_id}_", f">{new_id}_"))
        manifest.append(f"{new_id}\tstructures/{new_id}.pdb\tfasta/{new_id}.fasta\tpdb\tsynthetic:{src_id}")
        ids.append(new_id)
        if len(texts) > 64:
            texts.clear()
    (data / "manifest.tsv").write_text("\n".join(manifest) + "\n")
    return ids


# --------------------------------------------------------------------------------------------------------------
# one measured run (a child process: its own engine, its own resume cache)


def _params(threads: int, engine: str, address: str | None, shard_size: int = 0):
    import dataclasses

    from protalign.params import load_params

    p = load_params(REPO / "params.yaml")
    r = dataclasses.replace
    s = p.structure
    return r(
        p,
        prepare=r(p.prepare, workers=threads),
        embed_text=r(p.embed_text, threads=threads, device="cpu"),
        structure=r(s, threads=threads, device="cpu", gearnet_edge=r(s.gearnet_edge, weights="random")),
        compute=r(p.compute, engine=engine, threads=threads, shard_size=shard_size or p.compute.shard_size,
                  ray=r(p.compute.ray, address=address)),  # fmt: skip
    )


def run_one(root: Path, stage: str, engine: str, threads: int, address: str | None, shard_size: int) -> dict:
    """Run `stage` in `root` with the given engine; returns wall seconds and the outputs' digest."""
    from protalign.corpus import prepare
    from protalign.paths import Paths
    from protalign.structure import embed as structure_embed
    from protalign.text import embed as text_embed

    params, paths = _params(threads, engine, address, shard_size), Paths(root)
    run = {
        "prepare": lambda: prepare.run(params, paths),
        "embed_structure": lambda: structure_embed.run(params, paths, "gearnet_edge"),
        "embed_text": lambda: text_embed.run(params, paths, "smollm2-135m"),
    }[stage]
    out = {"prepare": paths.prepared, "embed_structure": paths.structure_embeddings("gearnet_edge"),
           "embed_text": paths.text_embeddings("smollm2-135m")}[stage]  # fmt: skip
    start = time.perf_counter()
    run()
    wall = time.perf_counter() - start
    digest = hashlib.sha256()
    for f in sorted(p for p in out.rglob("*") if p.is_file() and "mlflow" not in p.name):
        digest.update(f.relative_to(out).as_posix().encode() + f.read_bytes())
    return {"wall_s": wall, "digest": digest.hexdigest()}


def _rss_mib(pids: list[int]) -> list[float]:
    out = []
    for pid in pids:
        try:
            out.append(psutil.Process(pid).memory_info().rss / 2**20)
        except psutil.Error:
            pass
    return out


def measure(root: Path, stage: str, config: str, cluster, cache: Path, shard_size: int) -> dict:
    """Child-process run of one stage in one configuration, with the driver tree's and each Ray worker's peak RSS."""
    nodes, threads = CONFIGS[config]
    if cache.exists():
        shutil.rmtree(cache)
    cache.mkdir(parents=True)
    (cache / "models").symlink_to(REPO / ".protalign-cache" / "models")  # converted LLM files, not results
    shutil.rmtree(root / ("prepared" if stage == "prepare" else "embeddings"), ignore_errors=True)  # run afresh
    env = dict(os.environ, PROTALIGN_MAIN_ROOT=str(root), PROTALIGN_CACHE=str(cache), HF_HUB_OFFLINE="1",
               MLFLOW_TRACKING_URI=f"sqlite:///{root / 'mlflow.db'}", PYTHONPATH=str(REPO / "src"))  # fmt: skip
    env.pop("DVC_EXP_NAME", None)
    args = [str(root), stage, "ray" if nodes else "local", str(threads), cluster.address if nodes else "",
            str(shard_size)]  # fmt: skip
    proc = subprocess.Popen([sys.executable, __file__, "--one", *args], env=env, stdout=subprocess.PIPE, text=True)
    driver, workers, done = 0.0, 0.0, threading.Event()

    def poll() -> None:
        nonlocal driver, workers
        parent = psutil.Process(proc.pid)
        while not done.is_set():
            try:
                driver = max(driver, sum(_rss_mib([parent.pid, *(c.pid for c in parent.children(recursive=True))])))
            except psutil.Error:
                pass
            if nodes:
                workers = max([workers, *_rss_mib(cluster.pids("ray::"))])
            time.sleep(0.25)

    threading.Thread(target=poll, daemon=True).start()
    stdout, _ = proc.communicate()
    done.set()
    if proc.returncode:
        raise RuntimeError(f"{stage} on {config} failed (exit {proc.returncode})")
    result = json.loads(stdout.strip().splitlines()[-1])
    return result | {"driver_peak_mib": round(driver), "worker_peak_mib": round(workers) if nodes else None}


# --------------------------------------------------------------------------------------------------------------
# the benchmark


def setup_roots(shared: Path, work: Path, prepare_n: int, embed_n: int) -> tuple[Path, Path]:
    """`big` holds the prepare corpus; `small` its first embed_n entries, prepared, summarised, with a GearNet-Edge."""
    from protalign.corpus import prepare
    from protalign.paths import Paths
    from protalign.structure import train as structure_train
    from protalign.text import summarize

    big, small = work / "big", work / "small"
    if not (big / "data" / "manifest.tsv").exists():
        shutil.rmtree(big, ignore_errors=True)
        start = time.perf_counter()
        make_corpus(shared, big / "data", prepare_n)
        print(f"synthetic corpus of {prepare_n} entries in {time.perf_counter() - start:.0f} s", flush=True)
    if not ((small / "models").exists() and Paths(small).summaries.exists()):  # made whole, or made again
        shutil.rmtree(small, ignore_errors=True)
        make_corpus(shared, small / "data", embed_n)
        params, paths = _params(2, "local", None), Paths(small)
        prepare.run(params, paths)
        summarize.run(params, paths)
        structure_train.run(params, paths, "gearnet_edge")  # weights: random -> the seeded initial encoder
    return big, small


def rates(results: list[dict]) -> dict:
    """Per stage: proteins/s per configuration, Ray overhead (same cores) and 2-worker scaling efficiency."""
    out = {}
    for stage in STAGES:
        by = {r["config"]: r for r in results if r["stage"] == stage}
        if not {"local-1", "ray-1", "ray-2"} <= set(by):
            continue
        rate = {c: by[c]["n"] / by[c]["wall_s"] for c in by}
        out[stage] = {"rate": rate, "overhead": by["ray-1"]["wall_s"] / by["local-1"]["wall_s"] - 1,
                      "efficiency": rate["ray-2"] / (2 * rate["ray-1"])}  # fmt: skip
    return out


def extrapolate(stats: dict, sizes=(20_000, 1_000_000), workers=(1, 2, 8, 64)) -> list[list[str]]:
    """Hours per stage at `sizes` on N 1-CPU Ray workers, assuming the measured 2-worker efficiency holds at N."""
    rows = []
    for stage, s in stats.items():
        one, eff = s["rate"]["ray-1"], min(1.0, s["efficiency"])
        for n in sizes:
            rows.append([stage, f"{n:,}", *(f"{n / (one * (1 if w == 1 else w * eff)) / 3600:.2f} h" for w in workers)])
    return rows


def report(results: list[dict], args, provenance: dict) -> dict:
    stats = rates(results)
    measured = [[r["stage"], f"{r['n']:,}", r["config"], f"{r['wall_s']:.1f}", f"{r['n'] / r['wall_s']:.2f}",
                 str(r["driver_peak_mib"]), "-" if r["worker_peak_mib"] is None else str(r["worker_peak_mib"]),
                 {True: "yes", False: "**no**", None: "(reference)"}[r["equal_local"]]] for r in results]  # fmt: skip
    summary = [[st, f"{s['rate']['local-1']:.2f}", f"{s['rate']['ray-1']:.2f}", f"{100 * s['overhead']:+.1f}%",
                f"{s['rate']['ray-2']:.2f}", f"{s['efficiency']:.2f}"] for st, s in stats.items()]  # fmt: skip
    local = sum(r["wall_s"] for r in results if r["config"] == "local-1")
    ray1 = sum(r["wall_s"] for r in results if r["config"] == "ray-1")
    total = ray1 / local - 1 if local else float("nan")
    summary.append(["**all stages (summed wall)**", f"{local:.1f} s", f"{ray1:.1f} s", f"**{100 * total:+.1f}%**",
                    "", ""])  # fmt: skip
    return {
        "title": "Scaling: local engine vs Ray (1 and 2 workers)",
        "order": 13,
        "provenance": provenance,
        "tables": [
            {"columns": ["stage", "entries", "configuration", "wall s", "proteins/s", "driver peak MiB",
                         "worker peak MiB", "bytes equal local"], "rows": measured},  # fmt: skip
            {"columns": ["stage", "local 1 core (proteins/s)", "Ray 1 worker", "Ray overhead (target <= 15%)",
                         "Ray 2 workers", "2-worker efficiency"], "rows": summary},  # fmt: skip
            {"columns": ["stage (EXTRAPOLATED, not measured)", "entries", "1 worker", "2 workers", "8 workers",
                         "64 workers"], "rows": extrapolate(stats)},  # fmt: skip
        ],
        "notes": [
            "Overhead = Ray with one 1-CPU worker vs the local engine on one core (1 parser process, 1 torch "
            "thread): the same cores, so the difference is Ray's (connection, object store, worker start-up with "
            "torch import and model load, result transfer).",
            "Efficiency = proteins/s of 2 workers (two 1-CPU nodes on this 2-core machine; the driver shares "
            "those cores) / twice that of 1 worker.",
            "Extrapolation: hours = entries / (1-worker rate x N x min(1, measured 2-worker efficiency)) for N >= 2; it "
            "assumes that efficiency holds at N workers, CPU workers like this machine's cores, no GPU (no GPU "
            "was available: benchmarks/gpu_check.py did not run). Not a measurement.",
            *args.note,
        ],
        "raw": {"results": results, "stats": stats, "ray_overhead_summed": total},
    }


def main(argv: list[str] | None = None) -> int:
    if argv is None and len(sys.argv) > 1 and sys.argv[1] == "--one":
        root, stage, engine, threads, address, size = sys.argv[2:8]
        print(json.dumps(run_one(Path(root), stage, engine, int(threads), address or None, int(size))))
        return 0
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--prepare-n", type=int, default=20_000)
    ap.add_argument("--embed-n", type=int, default=2_000)
    ap.add_argument("--shard-size", type=int, default=0, help="compute.shard_size (0: params.yaml's)")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/protalign-bench-scale"))
    ap.add_argument("--json", type=Path, help="write the benchmark JSON here (e.g. docs/benchmarks/scale.json)")
    ap.add_argument("--note", action="append", default=[], help="a note for the JSON (repeatable)")
    args = ap.parse_args(argv)
    if not (args.data / "manifest.tsv").exists():
        print(f"no corpus at {args.data} (manifest.tsv missing)", file=sys.stderr)
        return 2
    from ray_local_cluster import start_cluster

    load0 = os.getloadavg()[0]
    big, small = setup_roots(args.data, args.workdir, args.prepare_n, args.embed_n)
    roots = {"prepare": (big, args.prepare_n), "embed_structure": (small, args.embed_n),
             "embed_text": (small, args.embed_n)}  # fmt: skip
    results, reference = [], {}
    for config, (nodes, _) in CONFIGS.items():
        clusters = start_cluster(nodes=nodes) if nodes else _no_cluster()
        cluster = next(clusters)
        try:
            for stage in STAGES:
                root, n = roots[stage]
                r = measure(root, stage, config, cluster, args.workdir / "cache", args.shard_size)
                reference.setdefault(stage, r["digest"])
                r |= {"stage": stage, "config": config, "n": n,
                      "equal_local": None if config == "local-1" else r["digest"] == reference[stage]}  # fmt: skip
                print(json.dumps(r), flush=True)
                results.append(r)
        finally:
            clusters.close()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
    provenance = {
        "machine": f"{os.cpu_count()}-core machine, {psutil.virtual_memory().total / 2**30:.0f} GiB",
        "code_commit": commit.stdout.strip(),
        "recorded_in": "written by benchmarks/bench_scale.py (this file)",
        "date": datetime.date.today().isoformat(),
        "command": f"python benchmarks/bench_scale.py --prepare-n {args.prepare_n} --embed-n {args.embed_n} "
        f"--shard-size {args.shard_size}",
        "source": "benchmarks/bench_scale.py output",
        "conditions": f"synthetic corpus from the PDB-format entries of the corpus folder {args.data.name!r} (rigidly moved, re-id'd); "
        f"load average (1 min) {load0:.1f} at start; Ray {_ray_version()}",
    }
    out = report(results, args, provenance)
    text = json.dumps(out, indent=1) + "\n"
    if args.json:
        args.json.write_text(text)
    print(text)
    return 0


def _no_cluster():
    yield None


def _ray_version() -> str:
    import ray

    return ray.__version__


if __name__ == "__main__":
    raise SystemExit(main())
