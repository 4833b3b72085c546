"""The DAG's deps against what the stages really do, on the session's scratch run.

- Every project file a stage opened (logged by the audit hook cli.py installs when PROTALIGN_AUDIT_OPENS is set,
  see protalign/audit.py for what it cannot see) is a declared dep, a declared output or params.yaml.
- Editing one module makes `dvc status` report exactly the stages whose code closure (protalign.dag_deps) holds
  it: structure/embed.py -> embed_structure@*, not train_structure@*; align/evaluate.py -> evaluate@*, not align@*.
  Downstream stages rerun only when such a stage's outputs change, which `dvc repro` decides by content.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path, PurePosixPath

import pytest
import yaml

from protalign import dag_deps

pytestmark = pytest.mark.pipeline

# machinery, not project data: DVC/git state, the MLflow store, caches, bytecode, a virtualenv
IGNORED_TOP = {".dvc", ".git", "mlartifacts", "mlruns", ".protalign-cache", ".venv", "venv", ".pytest_cache"}
# tracking.py tags each MLflow run with data.dvc's md5 (provenance only: no output depends on it)
PROVENANCE = {"data.dvc"}


def _lock(root: Path) -> dict[str, dict]:
    return yaml.safe_load((root / "dvc.lock").read_text())["stages"]


def _under(rel: PurePosixPath, paths: list[str]) -> bool:
    return any(rel == PurePosixPath(p) or PurePosixPath(p) in rel.parents for p in paths)


def _atomic_tmp(rel: PurePosixPath, outs: list[str]) -> bool:
    """storage.atomic_path writes `<parent>/.<name>.XXXX/<name>` beside an output, then moves it into place."""
    for out in map(PurePosixPath, outs):
        if out.parent == rel.parent or out.parent in rel.parents:
            first = rel.relative_to(out.parent).parts[0]
            if first.startswith(f".{out.name}."):
                return True
    return False


def _ignored(rel: PurePosixPath, event: str) -> bool:
    if rel.parts[0] in IGNORED_TOP or rel.name.startswith("mlflow.db") or "__pycache__" in rel.parts:
        return True
    # code under src/ is checked by dag_deps (imports, and the import system listing package folders)
    return rel.parts[0] == "src" and (rel.suffix == ".py" or event != "open")


def test_every_file_a_stage_opens_is_declared(pipeline_run):
    root = Path(os.path.realpath(pipeline_run.root))
    log = Path(pipeline_run.env["PROTALIGN_AUDIT_OPENS"])
    assert log.exists(), "cli.py did not write the audit log (PROTALIGN_AUDIT_OPENS)"
    by_cmd = {stage["cmd"]: (name, stage) for name, stage in _lock(root).items()}
    seen_stages: set[str] = set()
    undeclared: dict[str, set[str]] = {}
    for row in map(json.loads, log.read_text().splitlines()):
        path = Path(row["path"])
        if row["cmd"] not in by_cmd or root not in path.parents:
            continue  # not a stage of this run (fetch, use/ commands) or outside the repository
        name, stage = by_cmd[row["cmd"]]
        seen_stages.add(name)
        rel = PurePosixPath(path.relative_to(root).as_posix())
        deps = [d["path"] for d in stage.get("deps", [])]
        outs = [o["path"] for o in stage.get("outs", [])]
        if _ignored(rel, row["event"]) or str(rel) == "params.yaml" or str(rel) in PROVENANCE:
            continue
        if _under(rel, deps) or _under(rel, outs) or _atomic_tmp(rel, outs):
            continue
        kind = "writes" if row["write"] else "reads"
        undeclared.setdefault(name, set()).add(f"{kind} {rel} ({row['event']})")
    stages = {name for name, _ in by_cmd.values()}
    assert seen_stages == stages, f"no audit rows for {sorted(stages - seen_stages)}"
    report = "\n".join(f"{name}: {', '.join(sorted(v))}" for name, v in sorted(undeclared.items()))
    assert not undeclared, f"stages opened project files that are neither deps nor outputs:\n{report}"


@pytest.fixture(scope="module")
def scratch(pipeline_run, tmp_path_factory):
    """A copy of the session's run: edits here leave the shared repository untouched."""
    root = tmp_path_factory.mktemp("deps-edit") / "repo"
    shutil.copytree(pipeline_run.root, root, symlinks=True)
    return type(pipeline_run)(root=root, env=pipeline_run.env, repro_log="", ids=pipeline_run.ids)


def _status(run) -> set[str]:
    res = run.run("dvc", "status", "--json")
    return set(json.loads(res.stdout or "{}"))


def _template(stage: str) -> str:
    return stage.split("@")[0]


@pytest.mark.parametrize(
    ("module", "changed", "unchanged"),
    [
        ("src/protalign/structure/embed.py", "embed_structure", "train_structure"),
        ("src/protalign/align/evaluate.py", "evaluate", "align"),
    ],
)
def test_editing_a_module_changes_exactly_its_closure_stages(scratch, module, changed, unchanged):
    before = _status(scratch)
    lock = _lock(scratch.root)
    assert not {s for s in before if _template(s) in (changed, unchanged)}, before
    path = scratch.root / module
    text = path.read_text()
    path.write_text(text + "\n# content change (test_dag_audit)\n")
    try:
        after = _status(scratch) - before
    finally:
        path.write_text(text)
    closure = dag_deps.expected_deps(scratch.root)
    expect = {s for s in lock if module in closure[_template(s)]}
    assert after == expect, f"dvc status after editing {module}: {sorted(after)}; closure says {sorted(expect)}"
    items = {s for s in lock if _template(s) == changed}
    assert items and items <= after
    assert not {s for s in after if _template(s) == unchanged}
    assert _status(scratch) == before  # content restored: clean again
