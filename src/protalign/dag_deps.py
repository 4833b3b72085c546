"""Derive the code deps of every dvc.yaml stage from imports: `python -m protalign.dag_deps --check | --write`.

A stage's code closure is its stage module (cli.py's STAGES maps `protalign <verb>` to it) plus every protalign
module it imports, transitively: imports anywhere in a file (top level and inside functions, `import a.b`,
`from a import b` where b is a submodule, relative imports), the `__init__.py` of every package on the way, and
modules named in registry strings ("protalign.x.y" / "protalign.x.y:Attr"). cli.py and __main__.py are excluded:
they dispatch to every stage. Found with `ast`, never by importing, so a stage that imports lazily is still exact.

A `foreach`/`matrix` template runs one module for all its items; anything an item can pick (e.g. a GDM in the
structure registry) is named by a registry string, so the template's closure is already the union over its items.
params.py and paths.py are in every closure: cli.py loads them for every stage and passes them to `run()`.

`--write` replaces only the code entries (`src/<package>/**.py` files and folders) of each stage's deps, in place,
as one sorted block where the first of them stood; every other line of dvc.yaml is left byte-for-byte alone.
This module is imported by no stage module, so it is in no stage's closure.
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import yaml

PACKAGE = "protalign"
EXCLUDED = {f"{PACKAGE}.cli", f"{PACKAGE}.__main__"}
# cli.py builds a Params and a Paths for every stage and hands them to run(): their code shapes every stage
DISPATCH = (f"{PACKAGE}.params", f"{PACKAGE}.paths")
_REGISTRY_STRING = re.compile(rf"{PACKAGE}(\.[A-Za-z_]\w*)+(:[A-Za-z_][\w.]*)?")
_VERB = re.compile(rf"^\s*{PACKAGE}\s+([\w-]+)")


class DepsError(ValueError):
    """dvc.yaml or cli.py has a shape this tool cannot read (it never guesses)."""


# --- closure ---------------------------------------------------------------------------------------------------
def module_file(src: Path, name: str) -> Path | None:
    """The file that defines module `name` under `src` (module.py or package/__init__.py), or None."""
    base = src.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _parents(name: str) -> list[str]:
    """`a.b.c` -> [a, a.b, a.b.c]: importing a module executes every package above it."""
    parts = name.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def imported_names(path: Path, module: str) -> set[str]:
    """Every dotted name the file may import (candidates: the caller keeps those that are modules)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                names.update(_parents(alias.name))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = package.split(".")
                if node.level - 1 >= len(anchor):
                    raise DepsError(f"{path}: relative import beyond the top-level package")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            names.update(_parents(base))
            names.update(f"{base}.{alias.name}" for alias in node.names if alias.name != "*")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if _REGISTRY_STRING.fullmatch(node.value):
                names.add(node.value.partition(":")[0])  # whole name must be a module; parents added below
    return names


def closure(src: Path, *starts: str) -> set[Path]:
    """Files of `starts` and every package module they reach (see the module docstring)."""
    for start in starts:
        if module_file(src, start) is None:
            raise DepsError(f"module {start} has no file under {src}")
    seen: set[str] = set()
    todo = list(starts)
    while todo:
        name = todo.pop()
        path = module_file(src, name)
        if name in seen or name in EXCLUDED or path is None:  # None: a namespace package or not a module
            continue
        seen.add(name)
        found = {n for n in imported_names(path, name) if n.split(".")[0] == PACKAGE and module_file(src, n)}
        for n in found:
            todo.extend(_parents(n))
        todo.extend(_parents(name))
    return {module_file(src, n) for n in seen}


# --- cli.py and dvc.yaml ---------------------------------------------------------------------------------------
def stage_modules(cli_path: Path) -> dict[str, str]:
    """verb -> stage module, read from the `STAGES` dict literal in cli.py."""
    for node in ast.walk(ast.parse(cli_path.read_text())):
        target = node.target if isinstance(node, ast.AnnAssign) else None
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
        if isinstance(target, ast.Name) and target.id == "STAGES" and node.value is not None:
            table = ast.literal_eval(node.value)
            return {verb: entry[0] if isinstance(entry, tuple) else entry for verb, entry in table.items()}
    raise DepsError(f"{cli_path}: no STAGES = {{verb: (module, ...)}} table")


def is_code_dep(dep: str) -> bool:
    """Entries this tool owns: package source folders and .py files (package data files are data deps)."""
    prefix = f"src/{PACKAGE}"
    if dep.rstrip("/") != prefix and not dep.startswith(prefix + "/"):
        return False
    return dep.endswith(".py") or "." not in Path(dep).name


def _stage_body(name: str, stage: dict) -> dict:
    body = stage.get("do", stage) if "foreach" in stage else stage
    if not isinstance(body, dict) or "cmd" not in body:
        raise DepsError(f"stage {name}: no cmd")
    return body


def stage_verb(name: str, cmd) -> str | None:
    """`protalign <verb> ...` -> verb; None for a stage whose command is not ours."""
    cmds = cmd if isinstance(cmd, list) else [cmd]
    verbs = {m.group(1) for c in cmds if (m := _VERB.match(str(c)))}
    if len(verbs) > 1:
        raise DepsError(f"stage {name}: several protalign commands {sorted(verbs)}")
    verb = next(iter(verbs), None)
    if verb is not None and "$" in verb:
        raise DepsError(f"stage {name}: the protalign verb must not be templated")
    return verb


def expected_deps(root: Path) -> dict[str, list[str]]:
    """stage -> sorted code deps (paths relative to root) computed from the stage module's closure."""
    src = root / "src"
    verbs = stage_modules(src / PACKAGE / "cli.py")
    stages = yaml.safe_load((root / "dvc.yaml").read_text())["stages"]
    out: dict[str, list[str]] = {}
    for name, stage in stages.items():
        verb = stage_verb(name, _stage_body(name, stage)["cmd"])
        if verb is None:
            out[name] = []
            continue
        if verb not in verbs:
            raise DepsError(f"stage {name}: `{PACKAGE} {verb}` is not in cli.py STAGES")
        out[name] = sorted(p.relative_to(root).as_posix() for p in closure(src, verbs[verb], *DISPATCH))
    return out


def declared_deps(root: Path) -> dict[str, list[str]]:
    """stage -> its deps as written in dvc.yaml (strings)."""
    stages = yaml.safe_load((root / "dvc.yaml").read_text())["stages"]
    return {name: [str(d) for d in _stage_body(name, s).get("deps") or []] for name, s in stages.items()}


def problems(root: Path) -> list[str]:
    """One line per stage whose code deps differ from its closure: what is missing, what is extra."""
    expected, declared = expected_deps(root), declared_deps(root)
    lines = []
    for name, want in expected.items():
        have = {d for d in declared[name] if is_code_dep(d)}
        missing, extra = sorted(set(want) - have), sorted(have - set(want))
        if missing:
            lines.append(f"{name}: missing {', '.join(missing)}")
        if extra:
            lines.append(f"{name}: extra {', '.join(extra)}")
    return lines


# --- rewriting ---------------------------------------------------------------------------------------------
def _deps_nodes(text: str) -> Iterator[tuple[str, yaml.SequenceNode | None]]:
    """(stage name, its deps sequence node or None) from the composed document."""
    doc = yaml.compose(text)
    stages = next(v for k, v in doc.value if k.value == "stages")
    for key, stage in stages.value:
        body = stage
        keys = {k.value: v for k, v in stage.value}
        if "foreach" in keys and "do" in keys:
            body = keys["do"]
        deps = next((v for k, v in body.value if k.value == "deps"), None)
        yield key.value, deps


def rewrite(text: str, expected: dict[str, list[str]]) -> str:
    """dvc.yaml text with each stage's code deps replaced by `expected[stage]`; nothing else changes."""
    lines = text.splitlines(keepends=True)
    edits: list[tuple[int, int, list[str]]] = []  # (first line, end line exclusive, replacement lines)
    for name, deps in _deps_nodes(text):
        want = expected.get(name, [])
        if deps is None or not deps.value:
            if want:
                raise DepsError(f"stage {name}: add a `deps:` list (with its data deps) before --write")
            continue
        items = deps.value
        code = [n for n in items if isinstance(n, yaml.ScalarNode) and is_code_dep(n.value)]
        for n in code:
            if n.start_mark.line != n.end_mark.line:
                raise DepsError(f"stage {name}: code dep {n.value} spans several lines")
        anchor = code[0] if code else items[-1]
        line = lines[anchor.start_mark.line]
        dash = line.rfind("- ", 0, anchor.start_mark.column)
        if dash < 0:
            raise DepsError(f"stage {name}: deps must be a block list (`- path` per line)")
        new = [f"{line[:dash]}- {path}\n" for path in want]
        if code:
            for n in code[1:]:
                edits.append((n.start_mark.line, n.start_mark.line + 1, []))
            edits.append((anchor.start_mark.line, anchor.start_mark.line + 1, new))
        else:
            after = anchor.end_mark.line + (1 if anchor.end_mark.column else 0)
            edits.append((after, after, new))
    for start, end, new in sorted(edits, key=lambda e: e[0], reverse=True):
        lines[start:end] = new
    return "".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog=f"python -m {PACKAGE}.dag_deps", description=__doc__.split("\n\n")[0])
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--check", action="store_true", help="exit 1 listing missing/extra code deps per stage")
    mode.add_argument("--write", action="store_true", help="rewrite the code deps of dvc.yaml in place")
    mode.add_argument("--show", action="store_true", help="print each stage's closure")
    p.add_argument("--root", type=Path, default=Path.cwd(), help="repository root (default: cwd)")
    args = p.parse_args(argv)
    root = args.root.resolve()
    try:
        if args.show:
            for name, files in expected_deps(root).items():
                print(f"{name}: {' '.join(files) if files else '(no protalign command)'}")
            return 0
        if args.write:
            path = root / "dvc.yaml"
            text = path.read_text()
            new = rewrite(text, expected_deps(root))
            if new != text:
                path.write_text(new)
            print("dvc.yaml code deps " + ("rewritten" if new != text else "already exact"))
        found = problems(root)
    except DepsError as exc:
        print(f"dag_deps: error: {exc}", file=sys.stderr)
        return 2
    for line in found:
        print(line, file=sys.stderr)
    if found:
        print(f"dag_deps: {len(found)} problem(s); run `python -m {PACKAGE}.dag_deps --write`", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    raise SystemExit(main())
