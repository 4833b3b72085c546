"""Render the documentation's numbers from the files the code wrote, so no result is copied by hand.

Two targets:
- README.md and docs/SCALING.md: blocks between ``<!-- BEGIN generated: KIND SOURCE -->`` and ``<!-- END generated -->`` are
  re-rendered from SOURCE (a path relative to the repository root). Kinds: ``alignment`` (a ``report`` stage's
  alignment.csv plus the pair JSONs in the sibling ``metrics/`` folder), ``verdicts`` (a findings.md) and
  ``summary`` (a ``summarize_run`` stage's summary.json: the table ``protalign show`` prints) and
  ``summary_matrix`` (the same as a GDM x LLM matrix), ``ranking`` (PATH#LLM: one LLM's encoder ranking beside
  the floor and the look-up) and ``ablations`` (the ablation study's headline grid); the last two: docs_tables.py;
  ``benchmark`` (one docs/benchmarks/*.json: provenance, tables and notes).
- docs/BENCHMARKS.md: rendered whole from docs/benchmarks/*.json (measurements with their provenance).

``python -m protalign.docs_render`` rewrites both; ``--check`` only reports stale files (exit status 1).
No stage module imports this: it reads outputs, it is not part of the DAG.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
from pathlib import Path

from protalign import docs_tables
from protalign.analysis import summary as run_summary

BLOCK_RE = re.compile(
    r"(<!-- BEGIN generated: (?P<kind>[a-z_]+) (?P<src>\S+) -->\n)(?P<body>.*?)(<!-- END generated -->)", re.S
)
BEGIN_RE = re.compile(r"<!-- BEGIN generated:")
README = "README.md"
BLOCK_DOCS = (README, "docs/SCALING.md")  # files with generated blocks (README must exist; the others may not)
BENCH_DIR = "docs/benchmarks"
BENCH_MD = "docs/BENCHMARKS.md"
PROVENANCE_KEYS = ("machine", "code_commit", "recorded_in", "date", "command", "source")


class DocsError(ValueError):
    """A generated block or benchmark file that cannot be rendered (named in the message)."""


def _fmt(x: float, digits: int) -> str:
    s = f"{x:.{digits}f}"
    return s[1:] if s.startswith("-") and float(s) == 0 else s  # no "-0.000"


def _table(header: list[str], rows: list[list[str]], align: list[str] | None = None) -> list[str]:
    align = align or ["---"] * len(header)
    out = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


# ---------------------------------------------------------------------------------------------------------------
# README blocks

ALIGNMENT_COLUMNS = [  # (header, alignment.csv column, digits)
    ("alignment score", "alignment_score", 3),
    ("untrained heads", "baseline_alignment_score", 3),
    ("R@1 s→t", "recall@1_s2t", 2),
    ("R@1 t→s", "recall@1_t2s", 2),
    ("R@10 s→t", "recall@10_s2t", 2),
    ("R@10 t→s", "recall@10_t2s", 2),
    ("MRR s→t", "mrr_s2t", 2),
    ("MRR t→s", "mrr_t2s", 2),
]


def render_alignment(root: Path, src: str) -> list[str]:
    """Test-split metrics per pair from a report stage's alignment.csv, with the chance levels of each test size."""
    path = root / src
    if not path.is_file():
        raise DocsError(f"{src}: no such file (run the pipeline, or fix the marker)")
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    need = ["pair", "llm", "gdm", "n_test"] + [c for _, c, _ in ALIGNMENT_COLUMNS]
    missing = [c for c in need if rows and c not in rows[0]]
    if not rows or missing:
        raise DocsError(f"{src}: no rows or missing columns {missing}")
    metrics_dir = path.parent.parent / "metrics"
    header = ["pair"] + [h for h, _, _ in ALIGNMENT_COLUMNS] + ["n test"]
    body, chance = [], {}
    for r in rows:
        body.append(
            [f"{r['llm']} × {r['gdm']}"] + [_fmt(float(r[c]), d) for _, c, d in ALIGNMENT_COLUMNS] + [r["n_test"]]
        )
        pair_json = metrics_dir / f"{r['pair']}.json"
        if not pair_json.is_file():
            raise DocsError(f"{src}: pair {r['pair']} has no {pair_json.relative_to(root)}")
        m = json.loads(pair_json.read_text())
        chance.setdefault(int(r["n_test"]), (m["chance_recall@1"], m["chance_recall@10"], m["chance_mrr"]))
    lines = _table(header, body, ["---"] + ["---:"] * (len(header) - 1))
    for n, (r1, r10, mrr) in sorted(chance.items()):
        lines.append("")
        lines.append(f"Chance (random ranking of {n} test proteins): R@1 {_fmt(r1, 2)}, R@10 {_fmt(r10, 2)}, "
                     f"MRR {_fmt(mrr, 2)}.")
    return lines + ["", f"Source: `{src}`, `{metrics_dir.relative_to(root)}/<pair>.json`."]


FINDING_RE = re.compile(r"^## (F\d+) \((RQ\d+)\): (.+?)\.?$")
VERDICT_RE = re.compile(r"^\*\*Verdict: (.+?)\.\*\*$")


def render_verdicts(root: Path, src: str) -> list[str]:
    """One row per finding of a findings.md: its claim and the verdict the `findings` stage gave."""
    path = root / src
    if not path.is_file():
        raise DocsError(f"{src}: no such file")
    rows, current = [], None
    for line in path.read_text().splitlines():
        if m := FINDING_RE.match(line):
            current = [m.group(1), m.group(2), m.group(3)]
        elif current and (v := VERDICT_RE.match(line)):
            rows.append(current + [f"**{v.group(1)}**"])
            current = None
    if not rows:
        raise DocsError(f"{src}: no '## F<n> (RQ<n>): ...' finding with a '**Verdict: ...**' line")
    return _table(["finding", "question", "claim (the study's)", "verdict here"], rows) + ["", f"Source: `{src}`."]


def _summary_lines(root: Path, src: str, render) -> list[str]:
    """`render(summary)` of a summarize_run summary.json, with a clear error when it is missing or malformed."""
    path = root / src
    if not path.is_file():
        raise DocsError(f"{src}: no such file (run the pipeline, or fix the marker)")
    try:
        return render(json.loads(path.read_text()))
    except (ValueError, KeyError, TypeError) as e:
        raise DocsError(f"{src}: {e}") from e


def render_summary(root: Path, src: str) -> list[str]:
    """The run's answer as `protalign show` prints it: pairs ranked by headline gain, intervals, chance."""
    return _summary_lines(root, src, run_summary.render_markdown) + ["", f"Source: `{src}` (`protalign show`)."]


def render_summary_matrix(root: Path, src: str) -> list[str]:
    """The same summary as a GDM x LLM matrix (stays short however many pairs a run has)."""
    lines = _summary_lines(root, src, run_summary.render_matrix)
    return lines + ["", f"Source: `{src}` (`protalign show` prints it ranked)."]


RENDERERS = {
    "alignment": render_alignment,
    "verdicts": render_verdicts,
    "summary": render_summary,
    "summary_matrix": render_summary_matrix,
    "ranking": docs_tables.render_ranking,  # PATH#LLM: one LLM's encoder ranking (a findings stage's ranking.csv)
    "ablations": docs_tables.render_ablations,  # benchmarks/study_ablations.py's ablations.csv
    "benchmark": lambda root, src: render_benchmark_block(root / src),
}


def render_readme(text: str, root: Path, name: str = README) -> str:
    """`text` with every generated block re-rendered; unknown kinds and unclosed markers are errors."""
    if len(BEGIN_RE.findall(text)) != len(BLOCK_RE.findall(text)):
        raise DocsError(f"{name}: a 'BEGIN generated' marker without a matching '<!-- END generated -->'")

    def sub(m: re.Match) -> str:
        kind, src = m.group("kind"), m.group("src")
        if kind not in RENDERERS:
            raise DocsError(f"{name}: unknown generated kind {kind!r} (known: {sorted(RENDERERS)})")
        try:
            lines = RENDERERS[kind](root, src)
        except docs_tables.TableError as e:
            raise DocsError(str(e)) from e
        return m.group(1) + "\n".join(lines) + "\n" + m.group(5)

    return BLOCK_RE.sub(sub, text)


# ---------------------------------------------------------------------------------------------------------------
# docs/BENCHMARKS.md


def load_benchmark(path: Path) -> dict:
    """One benchmark file, checked: a title, full provenance and at least one table."""
    try:
        b = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DocsError(f"{path.name}: not JSON ({e})") from e
    prov = b.get("provenance", {})
    missing = [k for k in PROVENANCE_KEYS if k not in prov]
    if "title" not in b or missing or not b.get("tables"):
        raise DocsError(f"{path.name}: needs 'title', 'tables' and provenance keys {list(PROVENANCE_KEYS)}; "
                        f"missing provenance {missing}")
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", prov["date"]):
        raise DocsError(f"{path.name}: provenance.date {prov['date']!r} is not YYYY-MM-DD")
    for t in b["tables"]:
        width = len(t["columns"])
        bad = [r for r in t["rows"] if len(r) != width]
        if bad:
            raise DocsError(f"{path.name}: table {t.get('name', '?')!r} has rows of the wrong width: {bad[:1]}")
    return b


def _cell(v) -> str:
    return "–" if v is None else str(v)


def render_benchmark(b: dict, name: str) -> list[str]:
    p = b["provenance"]
    out = [f"## {b['title']}", "", f"`{BENCH_DIR}/{name}`", ""]
    out += [f"- machine: {p['machine']}", f"- date: {p['date']}"]
    out.append(f"- code: commit `{p['code_commit']}`" if p["code_commit"] else "- code: commit not stated")
    rec = p["recorded_in"]
    out.append(f"- recorded in: commit `{rec}`" if re.fullmatch(r"[0-9a-f]{7,40}", rec) else f"- recorded in: {rec}")
    out += [f"- command: `{p['command']}`",
            f"- source of the figures: {p['source']}"]
    if p.get("conditions"):
        out.append(f"- conditions: {p['conditions']}")
    for t in b["tables"]:
        out.append("")
        if t.get("name"):
            out += [f"**{t['name']}**", ""]
        out += _table(t["columns"], [[_cell(v) for v in r] for r in t["rows"]])
    if b.get("notes"):
        out.append("")
        out += [f"- {n}" for n in b["notes"]]
    return out + [""]


def render_benchmark_block(path: Path) -> list[str]:
    """One benchmark file as a generated block (its heading is the host document's)."""
    if not path.is_file():
        raise DocsError(f"{path}: benchmark file not found (run the benchmark that writes it)")
    return render_benchmark(load_benchmark(path), path.name)[2:]


def render_benchmarks(root: Path) -> str:
    files = sorted((root / BENCH_DIR).glob("*.json"))
    if not files:
        raise DocsError(f"{BENCH_DIR}: no benchmark files")
    benches = [(f.name, load_benchmark(f)) for f in files]
    benches.sort(key=lambda nb: (nb[1].get("order", 99), nb[0]))
    out = ["# Benchmarks and measurement history", "",
           f"<!-- generated by `python -m protalign.docs_render` from {BENCH_DIR}/*.json: edit those, not this -->",
           "", "Every figure below was measured once, on the machine named, and is kept with its provenance. "
           "To add one, write a JSON file beside the others (same keys) and re-render.", ""]
    out += [f"- [{b['title']}](#{_anchor(b['title'])})" for _, b in benches]
    out.append("")
    for name, b in benches:
        out += render_benchmark(b, name)
    return "\n".join(out)


def _anchor(title: str) -> str:
    s = re.sub(r"[^\w\- ]", "", title.lower()).strip()
    return s.replace(" ", "-")


# ---------------------------------------------------------------------------------------------------------------


def stale(root: Path) -> dict[str, str]:
    """{relative path: wanted text} for every file whose committed text differs from its rendering."""
    out = {}
    for name in BLOCK_DOCS:
        if name == README or (root / name).is_file():
            text = (root / name).read_text()
            if (want := render_readme(text, root, name)) != text:
                out[name] = want
    bench = root / BENCH_MD
    want = render_benchmarks(root)
    if not bench.is_file() or bench.read_text() != want:
        out[BENCH_MD] = want
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m protalign.docs_render", description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=Path.cwd(), help="repository root (default: the current folder)")
    ap.add_argument("--check", action="store_true", help="only report stale files; exit 1 if any")
    args = ap.parse_args(argv)
    try:
        todo = stale(args.root)
    except DocsError as e:
        print(f"docs_render: error: {e}", file=sys.stderr)
        return 2
    for rel, text in todo.items():
        if args.check:
            print(f"stale: {rel} (run `python -m protalign.docs_render`)")
        else:
            (args.root / rel).write_text(text)
            print(f"rendered {rel}")
    return 1 if args.check and todo else 0


if __name__ == "__main__":
    sys.exit(main())
