"""The README stays short, keeps the two commands, names no outside path, and its numbers come from generated files."""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

import pytest

from protalign import docs_render
from protalign.docs_render import DocsError, render_benchmarks, render_readme, stale

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOC_PAGES = [README, *sorted((REPO / "docs").glob("*.md"))]
EXPECTED_BLOCKS = {
    ("summary_matrix", "reports/summary.json"),  # the default run: `protalign show`'s numbers, GDM x LLM
    ("ranking", "reports/study/reports/ranking.csv#gemma3-270m"),
    ("verdicts", "reports/study/reports/findings.md"),
}


def _outside_blocks(text: str) -> str:
    return docs_render.BLOCK_RE.sub("", text)


def test_readme_is_short():
    n = len(README.read_text().splitlines())
    assert n <= 260, f"README.md has {n} lines; move long-form material to docs/"


def test_readme_keeps_the_two_commands():
    lines = [line.split("#")[0].strip() for line in README.read_text().splitlines()]
    assert "bash scripts/run.sh" in lines
    assert "bash scripts/test.sh" in lines


# a path that starts at the file-system root (or a home folder), not a URL's "//" nor a ratio like "proteins/s"
ABS_PATH = re.compile(r"(?:^|[\s`'\"(\[=])(~?/[A-Za-z0-9_.-]+/?)+", re.M)


@pytest.mark.parametrize("page", DOC_PAGES, ids=lambda p: p.name)
def test_docs_name_no_path_outside_the_repository(page: Path):
    text = page.read_text()
    assert "../" not in text, f"{page.name} names a path outside the repository"
    hits = [m.group(0).strip() for m in ABS_PATH.finditer(text)]
    assert not hits, f"{page.name} names absolute paths: {hits}"


def test_abs_path_pattern_catches_paths_and_spares_urls():
    assert ABS_PATH.search("corpus in /work/shared/data")
    assert ABS_PATH.search("see `~/data`")
    assert not ABS_PATH.search("https://arxiv.org/abs/2411.05316 and s3://bucket/x, 39 proteins/s, a / b")


# results copied by hand: decimals, or numbers with a time/memory unit, in prose (not generated, not a command)
ALLOWED_DECIMALS = {"3.11", "2411.05316"}  # the Python floor and the study's arXiv id
DECIMAL = re.compile(r"(?<![\w.])[-−]?\d+\.\d+(?![\w.])")
WITH_UNIT = re.compile(r"\b\d+(?:\.\d+)?\s?(?:ms|s|min|h|GB|MB|MiB|GiB)\b|\b\d+(?:\.\d+)?\s?[a-z]+/s\b")


def test_readme_has_no_hand_copied_numbers():
    text = re.sub(r"```.*?```", "", _outside_blocks(README.read_text()), flags=re.S)
    decimals = [d for d in DECIMAL.findall(text) if d not in ALLOWED_DECIMALS]
    assert not decimals, f"numbers outside generated blocks (render them from files instead): {decimals}"
    assert not WITH_UNIT.findall(text), f"timings/sizes in the README belong in docs/benchmarks: {WITH_UNIT.findall(text)}"


def test_readme_generated_blocks_are_present():
    found = {(m.group("kind"), m.group("src")) for m in docs_render.BLOCK_RE.finditer(README.read_text())}
    assert EXPECTED_BLOCKS <= found


def test_readme_generated_blocks_are_up_to_date():
    text = README.read_text()
    assert render_readme(text, REPO) == text, "README.md is stale: run `python -m protalign.docs_render`"


def test_generated_doc_pages_are_up_to_date():
    """README.md and docs/SCALING.md (generated from docs/benchmarks/scale.json) render to what is committed."""
    stale = set(docs_render.stale(REPO))
    assert not stale, f"{sorted(stale)} stale: run `python -m protalign.docs_render`"


def test_benchmarks_page_is_up_to_date():
    page = REPO / docs_render.BENCH_MD
    assert page.read_text() == render_benchmarks(REPO), "docs/BENCHMARKS.md is stale: run the renderer"


def test_every_benchmark_has_provenance():
    files = sorted((REPO / docs_render.BENCH_DIR).glob("*.json"))
    assert files
    for f in files:
        prov = docs_render.load_benchmark(f)["provenance"]
        assert prov["machine"] and prov["command"] and prov["date"] and prov["source"], f.name


@pytest.mark.parametrize("page", DOC_PAGES, ids=lambda p: p.name)
def test_relative_links_resolve(page: Path):
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
        if "://" in target:
            continue
        assert (page.parent / target).exists(), f"{page.name} links to missing {target}"


def test_no_stage_module_imports_the_renderer():
    users = [p for p in (REPO / "src" / "protalign").rglob("*.py")
             if p.name != "docs_render.py" and "docs_render" in p.read_text()]
    assert not users, f"docs_render is a documentation tool, not part of the DAG: {users}"


# ---------------------------------------------------------------------------------------------------------------
# The renderer on a small synthetic repository: values come from the files, stale files are found.

ROWS = [("a", "g", 0.12345, -0.0001, 81), ("b", "g", -0.5, 0.25, 81)]


def _mini_repo(root: Path) -> Path:
    (root / "reports").mkdir(parents=True)
    (root / "metrics").mkdir()
    cols = ["pair", "llm", "gdm", "n_test"] + [c for _, c, _ in docs_render.ALIGNMENT_COLUMNS]
    with (root / "reports" / "alignment.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols)
        for llm, gdm, score, base, n in ROWS:
            w.writerow([f"{llm}__{gdm}", llm, gdm, n, score, base] + [0.5] * (len(cols) - 6))
            chance = {"chance_recall@1": 1 / n, "chance_recall@10": 10 / n, "chance_mrr": 0.0615}
            (root / "metrics" / f"{llm}__{gdm}.json").write_text(json.dumps(chance))
    (root / "reports" / "findings.md").write_text(
        "# x\n\n## F1 (RQ1): bigger is better.\n\n**Verdict: inconclusive.**\n\n## RQ2: other\n"
    )
    (root / "README.md").write_text(
        "# mini\n<!-- BEGIN generated: alignment reports/alignment.csv -->\nold\n<!-- END generated -->\n"
        "text\n<!-- BEGIN generated: verdicts reports/findings.md -->\n<!-- END generated -->\n"
    )
    shutil.copytree(REPO / docs_render.BENCH_DIR, root / docs_render.BENCH_DIR)
    return root


def test_renderer_takes_values_from_the_files(tmp_path: Path):
    root = _mini_repo(tmp_path)
    out = render_readme((root / "README.md").read_text(), root)
    assert "| a × g | 0.123 | 0.000 | 0.50 |" in out  # 3 decimals, no "-0.000"
    assert "| b × g | -0.500 | 0.250 |" in out
    assert "random ranking of 81 test proteins): R@1 0.01, R@10 0.12, MRR 0.06" in out
    assert "| F1 | RQ1 | bigger is better | **inconclusive** |" in out
    assert "old" not in out
    assert render_readme(out, root) == out  # idempotent


def test_check_reports_stale_then_clean(tmp_path: Path, capsys):
    root = _mini_repo(tmp_path)
    assert set(stale(root)) == {"README.md", docs_render.BENCH_MD}
    assert docs_render.main(["--check", "--root", str(root)]) == 1
    assert docs_render.main(["--root", str(root)]) == 0
    assert docs_render.main(["--check", "--root", str(root)]) == 0
    # a result changes: the committed README is stale again
    text = (root / "reports" / "alignment.csv").read_text().replace("0.12345", "0.2")
    (root / "reports" / "alignment.csv").write_text(text)
    assert set(stale(root)) == {"README.md"}
    capsys.readouterr()


def test_bad_markers_and_sources_are_errors(tmp_path: Path):
    root = _mini_repo(tmp_path)
    with pytest.raises(DocsError, match="without a matching"):
        render_readme("<!-- BEGIN generated: alignment reports/alignment.csv -->\nx\n", root)
    with pytest.raises(DocsError, match="unknown generated kind"):
        render_readme("<!-- BEGIN generated: nope reports/alignment.csv -->\n<!-- END generated -->", root)
    with pytest.raises(DocsError, match="no such file"):
        render_readme("<!-- BEGIN generated: alignment reports/none.csv -->\n<!-- END generated -->", root)
    (root / "metrics" / "b__g.json").unlink()
    with pytest.raises(DocsError, match="b__g has no metrics/b__g.json"):
        render_readme((root / "README.md").read_text(), root)


def test_benchmark_without_provenance_is_an_error(tmp_path: Path):
    bench = tmp_path / "x.json"
    good = json.loads((REPO / docs_render.BENCH_DIR / "parse.json").read_text())
    broken = dict(good, provenance={k: v for k, v in good["provenance"].items() if k != "date"})
    bench.write_text(json.dumps(broken))
    with pytest.raises(DocsError, match="date"):
        docs_render.load_benchmark(bench)
    bad_row = dict(good, tables=[{"columns": ["a", "b"], "rows": [["1"]]}])
    bench.write_text(json.dumps(bad_row))
    with pytest.raises(DocsError, match="wrong width"):
        docs_render.load_benchmark(bench)


def test_summary_block_is_protalign_shows_table(tmp_path: Path):
    pair = {"gain": 0.031, "gain_lo": -0.004, "gain_hi": 0.0662, "score": 0.1, "r10": 0.5}
    data = {"a__g": pair, "b__g": dict(pair, gain=None, gain_lo=None, gain_hi=None, score=0.2),
            "chance": {"r10": 0.125, "n_min": 80, "n_max": 80}}  # fmt: skip
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "summary.json").write_text(json.dumps(data))
    out = render_readme("<!-- BEGIN generated: summary reports/summary.json -->\n<!-- END generated -->", tmp_path)
    assert "| 1 | a × g | 0.031 | [-0.004, 0.066] | 0.100 | 0.50 |" in out
    assert "| 2 | b × g | n/a | n/a | 0.200 | 0.50 |" in out  # no headline: last, never a made-up number
    assert "R@10 t→s 0.12 (random ranking of 80 test proteins" in out and "No headline for 1 of 2" in out
    (tmp_path / "reports" / "summary.json").write_text(json.dumps({"a__g": {"gain": 1}}))
    with pytest.raises(DocsError, match="not a run summary"):
        render_readme("<!-- BEGIN generated: summary reports/summary.json -->\n<!-- END generated -->", tmp_path)
