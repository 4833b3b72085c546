"""README study tables (protalign/docs_tables.py): the encoder ranking of one LLM and the ablation grid."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from protalign import docs_render
from protalign.docs_tables import TableError, render_ablations, render_ranking

HEAD = "llm,rank,encoder,kind,headline,headline_ci_low,headline_ci_high,strict,strict_ci_low,strict_ci_high," \
       "random_leaky,random_leaky_ci_low,random_leaky_ci_high,score,score_gain_control\n"  # fmt: skip


def _ranking(tmp_path):
    (tmp_path / "ranking.csv").write_text(
        HEAD + "a,2,gat,GDM,0.01,-0.02,0.04,,,,0.2,0.1,0.3,0.05,0.02\n"
        "a,1,homology look-up,reference: look-up (no structure),0.1,0.05,0.15,0,0,0,0.5,0.4,0.6,0.1,0.1\n"
        "b,1,gat,GDM,0.3,0.2,0.4,0.3,0.2,0.4,0.3,0.2,0.4,0.1,0.1\n"
    )


def test_ranking_block_is_one_llm_in_rank_order(tmp_path):
    _ranking(tmp_path)
    lines = render_ranking(tmp_path, "ranking.csv#a")
    assert lines[2].startswith("| 1 | homology look-up | reference: look-up")
    assert lines[3] == "| 2 | gat | GDM | 0.010 [-0.020, 0.040] | — | 0.200 [0.100, 0.300] | 0.050 | 0.020 |"
    assert len([x for x in lines if x.startswith("| ")]) == 3  # header + 2 rows; LLM b left out
    with pytest.raises(TableError, match="no rows for LLM 'c'"):
        render_ranking(tmp_path, "ranking.csv#c")
    with pytest.raises(TableError, match="PATH#LLM"):
        render_ranking(tmp_path, "ranking.csv")


def test_readme_marker_renders_and_reports_a_missing_file(tmp_path):
    _ranking(tmp_path)
    text = "<!-- BEGIN generated: ranking ranking.csv#b -->\nold\n<!-- END generated -->\n"
    assert "| 1 | gat | GDM | 0.300 [0.200, 0.400]" in docs_render.render_readme(text, tmp_path)
    with pytest.raises(docs_render.DocsError, match="nope.csv: no such file"):
        docs_render.render_readme(text.replace("ranking.csv#b", "nope.csv#b"), tmp_path)


def test_ablation_grid_keeps_missing_cells(tmp_path):
    (tmp_path / "ablations.csv").write_text(
        "ablation,gdm,llm,headline_gain,headline_ci_low,headline_ci_high\n"
        "baseline,gat,x,0.1,0.05,0.15\nbaseline,gvp,x,0.2,0.1,0.3\nname_only,gat,x,0.3,0.2,0.4\nname_only,gvp,x,,,\n"
    )
    lines = render_ablations(tmp_path, "ablations.csv")
    assert lines[0] == "| GDM | baseline | name_only |"
    assert lines[3] == "| gvp | 0.2000 [0.1000, 0.3000] | — |"


def test_benchmark_block_renders_one_benchmark_file_without_its_heading(tmp_path):
    repo = Path(__file__).resolve().parents[1]
    shutil.copy(repo / "docs" / "benchmarks" / "parse.json", tmp_path / "b.json")
    text = "# Page\n<!-- BEGIN generated: benchmark b.json -->\n<!-- END generated -->\n"
    out = docs_render.render_readme(text, tmp_path, "docs/SCALING.md")
    bench = json.loads((tmp_path / "b.json").read_text())
    assert f"- machine: {bench['provenance']['machine']}" in out and "## " not in out
    with pytest.raises(docs_render.DocsError, match="benchmark file not found"):
        docs_render.render_readme(text.replace("b.json", "none.json"), tmp_path, "docs/SCALING.md")
