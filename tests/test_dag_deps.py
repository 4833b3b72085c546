"""The dvc.yaml code-deps tool (protalign.dag_deps) and the open-audit hook (protalign.audit)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from protalign import dag_deps

REPO = Path(__file__).resolve().parents[1]


def test_committed_dvc_yaml_code_deps_are_exact():
    assert dag_deps.problems(REPO) == [], "run `python -m protalign.dag_deps --write`"


def _copy_root(tmp_path: Path, text: str) -> Path:
    (tmp_path / "src").symlink_to(REPO / "src")
    (tmp_path / "dvc.yaml").write_text(text)
    return tmp_path


def _edit_in_stage(text: str, stage: str, old: str, new: str) -> str:
    """Replace the first `old` line after `  <stage>:` (the same path appears in several stages)."""
    start = text.index(f"\n  {stage}:\n")
    at = text.index(old, start)
    return text[:at] + new + text[at + len(old):]


def test_wrong_copy_fails_naming_missing_and_extra_then_write_restores_it(tmp_path, capsys):
    good = (REPO / "dvc.yaml").read_text()
    bad = _edit_in_stage(good, "evaluate", "      - src/protalign/align/evaluate.py\n", "")
    bad = _edit_in_stage(
        bad, "align", "      - src/protalign/align/heads.py\n",
        "      - src/protalign/align/heads.py\n      - src/protalign/structure/embed.py\n",
    )
    root = _copy_root(tmp_path, bad)
    assert dag_deps.problems(root) == [
        "align: extra src/protalign/structure/embed.py",
        "evaluate: missing src/protalign/align/evaluate.py",
    ]
    assert dag_deps.main(["--check", "--root", str(root)]) == 1
    err = capsys.readouterr().err
    assert "evaluate: missing src/protalign/align/evaluate.py" in err and "2 problem(s)" in err
    assert dag_deps.main(["--write", "--root", str(root)]) == 0
    assert (root / "dvc.yaml").read_text() == good  # comments, data deps and layout untouched


def test_folder_dep_is_reported_as_extra(tmp_path):
    good = (REPO / "dvc.yaml").read_text()
    bad = _edit_in_stage(good, "report", "      - src/protalign/analysis/report.py\n", "      - src/protalign/analysis\n")
    problems = dag_deps.problems(_copy_root(tmp_path, bad))
    assert problems == [
        "report: missing src/protalign/analysis/report.py",
        "report: extra src/protalign/analysis",
    ]


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


SYNTHETIC = {
    "src/protalign/__init__.py": "",
    "src/protalign/cli.py": """
        from protalign.params import load
        STAGES: dict = {"go": ("protalign.a.stage", True, False)}
    """,
    "src/protalign/params.py": "import yaml\n",
    "src/protalign/paths.py": "import os\n",
    "src/protalign/unused.py": "",
    "src/protalign/a/__init__.py": "",
    "src/protalign/a/stage.py": """
        from . import helper  # relative import of a submodule


        def run():
            from protalign.b import registry  # inside a function

            return registry
    """,
    "src/protalign/a/helper.py": """
        from .lazy import thing
        from ..d import e
        from protalign.cli import main  # cli.py dispatches to every stage: never in a closure
    """,
    "src/protalign/a/lazy.py": "thing = 1\n",
    "src/protalign/b/__init__.py": "",
    "src/protalign/b/registry.py": """
        MODELS = {"x": "protalign.b.impl_x:X", "y": "protalign.b.impl_y"}
        TAG = "protalign.stage"  # looks like a module name but is none: ignored
    """,
    "src/protalign/b/impl_x.py": "class X: ...\n",
    "src/protalign/b/impl_y.py": "import protalign.c.deep\n",
    "src/protalign/b/impl_z.py": "",  # in the package but never named
    "src/protalign/c/deep.py": "",  # c/ is a namespace package (no __init__.py)
    "src/protalign/d/__init__.py": "",
    "src/protalign/d/e.py": "",
}


def test_closure_of_a_synthetic_package(tmp_path):
    _write(tmp_path, SYNTHETIC)
    got = dag_deps.closure(tmp_path / "src", "protalign.a.stage")
    rel = sorted(p.relative_to(tmp_path / "src" / "protalign").as_posix() for p in got)
    assert rel == [
        "__init__.py", "a/__init__.py", "a/helper.py", "a/lazy.py", "a/stage.py", "b/__init__.py",
        "b/impl_x.py", "b/impl_y.py", "b/registry.py", "c/deep.py", "d/__init__.py", "d/e.py",
    ]


def test_write_fills_a_foreach_template_and_keeps_data_deps(tmp_path):
    _write(tmp_path, SYNTHETIC)
    (tmp_path / "dvc.yaml").write_text(textwrap.dedent("""\
        stages:
          go:                     # a template: one module for every item
            foreach: [p, q]
            do:
              cmd: protalign go --x ${item}
              deps:
                - in/${item}.txt    # data
                - src/protalign/a
              outs:
                - out/${item}
          bare:
            cmd: protalign go --x 1
            deps:
              - in/1.txt  # no code deps yet
            outs:
              - out/1
          other:
            cmd: python tool.py
            deps:
              - in
              - src/protalign/unused.py
    """))
    assert dag_deps.problems(tmp_path) == [
        "go: missing " + ", ".join(f"src/protalign/{f}" for f in (
            "__init__.py", "a/__init__.py", "a/helper.py", "a/lazy.py", "a/stage.py", "b/__init__.py",
            "b/impl_x.py", "b/impl_y.py", "b/registry.py", "c/deep.py", "d/__init__.py", "d/e.py",
            "params.py", "paths.py",
        )),
        "go: extra src/protalign/a",
        "bare: missing " + ", ".join(f"src/protalign/{f}" for f in (
            "__init__.py", "a/__init__.py", "a/helper.py", "a/lazy.py", "a/stage.py", "b/__init__.py",
            "b/impl_x.py", "b/impl_y.py", "b/registry.py", "c/deep.py", "d/__init__.py", "d/e.py",
            "params.py", "paths.py",
        )),
        "other: extra src/protalign/unused.py",
    ]
    assert dag_deps.main(["--write", "--root", str(tmp_path)]) == 0
    text = (tmp_path / "dvc.yaml").read_text()
    assert "        - in/${item}.txt    # data\n        - src/protalign/__init__.py\n" in text
    assert "      - in/1.txt  # no code deps yet\n      - src/protalign/__init__.py\n" in text
    assert "      - src/protalign/paths.py\n    outs:\n      - out/1\n" in text
    assert text.endswith("    deps:\n      - in\n")  # the other stage runs no protalign module: no code deps
    assert "# a template: one module for every item" in text
    assert dag_deps.problems(tmp_path) == []


def test_unknown_verb_is_an_error(tmp_path, capsys):
    _write(tmp_path, SYNTHETIC)
    (tmp_path / "dvc.yaml").write_text("stages:\n  s:\n    cmd: protalign nope\n    deps:\n      - x\n")
    assert dag_deps.main(["--check", "--root", str(tmp_path)]) == 2
    assert "`protalign nope` is not in cli.py STAGES" in capsys.readouterr().err


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_audit_hook_logs_project_opens_listings_and_forked_children(tmp_path):
    log = tmp_path / "log.jsonl"
    (tmp_path / "d").mkdir()
    (tmp_path / "r.txt").write_text("x")
    code = textwrap.dedent(f"""
        import os
        import shutil
        import pandas as pd
        import pyarrow.parquet as pq
        from protalign.audit import install
        pd.DataFrame({{"a": [1]}}).to_parquet("p.parquet")
        install({str(log)!r}, "protalign demo")
        pd.read_parquet("p.parquet")  # Arrow reads in C++: the wrapper raises the event
        pq.read_table("p.parquet", columns=["a"])
        open("r.txt").read()
        open("w.txt", "w").write("y")
        os.listdir("d")
        os.makedirs("t/sub")
        open("t/sub/f", "w").close()
        shutil.rmtree("t")  # opens "sub" relative to a folder descriptor: must not be logged as ./sub
        open({sys.executable!r}, "rb").close()  # outside the working directory: not logged
        pid = os.fork()
        if pid == 0:
            open("child.txt", "w").close()
            os._exit(0)
        os.waitpid(pid, 0)
    """)
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, check=True)
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    root = os.path.realpath(tmp_path)
    got = {(r["event"], os.path.relpath(r["path"], root), r["write"]) for r in rows}
    assert got == {
        ("open", "r.txt", False), ("open", "w.txt", True), ("os.listdir", "d", False),
        ("open", "child.txt", True), ("open", "t/sub/f", True), ("open", "t", False), ("open", "p.parquet", False),
    }
    assert {r["cmd"] for r in rows} == {"protalign demo"}


def test_cli_installs_the_hook_only_when_asked(tmp_path):
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"), PROTALIGN_AUDIT_OPENS=str(tmp_path / "log.jsonl"))
    cmd = [sys.executable, "-m", "protalign", "split"]
    res = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert res.returncode != 0  # nothing prepared here; the point is what it opened first
    rows = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert {"cmd": "protalign split", "event": "open", "path": os.path.realpath(tmp_path / "params.yaml"),
            "write": False} in rows
