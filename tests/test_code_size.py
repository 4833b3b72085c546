"""Size limits a reader can hold in their head: no module over 400 lines, no function over 80.

Every .py file under src/protalign and benchmarks is parsed with `ast`; a function's length runs from its
`def` line to its last line (decorators excluded), so nested helpers count towards their parent too.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCANNED = (ROOT / "src" / "protalign", ROOT / "benchmarks")
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 80


def _python_files() -> list[Path]:
    return sorted(p for d in SCANNED for p in d.rglob("*.py"))


def _name(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def module_violations(path: Path, limit: int = MAX_MODULE_LINES) -> list[str]:
    n = len(path.read_text().splitlines())
    return [f"{_name(path)}: module has {n} lines (> {limit})"] if n > limit else []


def function_violations(path: Path, limit: int = MAX_FUNCTION_LINES) -> list[str]:
    """Every function or method (at any depth) whose def..end spans more than `limit` lines."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            n = node.end_lineno - node.lineno + 1
            if n > limit:
                found.append(f"{_name(path)}:{node.lineno}: {node.name} has {n} lines (> {limit})")
    return found


def test_scans_some_files():
    files = _python_files()
    assert any(p.name == "cli.py" for p in files)
    assert any(p.parent.name == "benchmarks" for p in files)


def test_no_module_over_limit():
    bad = [v for p in _python_files() for v in module_violations(p)]
    assert not bad, "modules over the size limit:\n" + "\n".join(bad)


def test_no_function_over_limit():
    bad = [v for p in _python_files() for v in function_violations(p)]
    assert not bad, "functions over the size limit:\n" + "\n".join(bad)


def test_checker_catches_oversized(tmp_path):
    """The checks can fail: a synthetic long function and long module are reported."""
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    src = f"@decorator\ndef long_one():\n{body}\n\n\ndef short_one():\n    return 1\n"
    f = tmp_path / "probe.py"
    f.write_text(src)
    bad = function_violations(f)
    assert len(bad) == 1 and "long_one" in bad[0] and f"{MAX_FUNCTION_LINES + 1} lines" in bad[0]
    assert function_violations(f, limit=MAX_FUNCTION_LINES + 1) == []
    assert module_violations(f, limit=10) and not module_violations(f, limit=10_000)
