"""Layering of the product code, read from the sources with `ast` (no TensorFlow, nothing imported).

- No import cycle among the modules of trainer/ and converter/, counting every import: at the top of
  a module and inside functions (a lazy import that dodges a cycle at import time is still a cycle
  in the design: two modules that each need the other).
- The product (edge/, trainer/ with its shipped recipe, converter/, bench/) never imports research/:
  research may import the trainer, not the other way round.

`python tests/test_trainer_layering.py [ROOT]` prints the findings for a checkout at ROOT (e.g. an
older commit's files exported to a folder) and exits 1 if there are any.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

from import_cycles import cycles

REPO = Path(__file__).resolve().parents[1]
LAYERED = ("trainer", "converter")  # packages whose modules must form no cycle
PRODUCT = ("edge", "trainer", "converter", "bench")  # never import research/
RESEARCH = "research"


def module_names(root: Path, package: str) -> dict[str, Path]:
    """The modules of one package folder (not its subfolders): dotted name -> file."""
    folder = root / package
    out = {}
    for path in sorted(folder.glob("*.py")):
        out[package if path.stem == "__init__" else f"{package}.{path.stem}"] = path
    return out


def imports(path: Path, module: str) -> list[tuple[str, int]]:
    """Every module `path` imports (dotted, relative imports resolved), with the line, lazy ones included.

    `from pkg import name` yields pkg.name as well as pkg, so that a submodule imported by name counts."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = module if path.stem == "__init__" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            found.append((source, node.lineno))
            found += [(f"{source}.{alias.name}", node.lineno) for alias in node.names]
    return found


def import_graph(root: Path, packages=LAYERED) -> dict[str, dict[str, int]]:
    """module -> {module it imports: line}, among the modules of `packages` only."""
    modules = {}
    for package in packages:
        modules.update(module_names(root, package))
    graph = {}
    for name, path in modules.items():
        edges = {}
        for target, line in imports(path, name):
            if target in modules and target != name:
                edges.setdefault(target, line)
        graph[name] = edges
    return graph


def describe_cycle(graph: dict[str, dict[str, int]], component: list[str]) -> str:
    """One closed path through a cycle's modules, with the line of each import: a -> b (line) -> ... -> a."""
    members = set(component)
    start = component[0]
    path, seen = [start], {start}
    while True:  # walk within the component until a module repeats
        here = path[-1]
        nxt = sorted(t for t in graph[here] if t in members)
        step = next((t for t in nxt if t == start), None) or next((t for t in nxt if t not in seen), nxt[0])
        path.append(step)
        if step in seen:
            break
        seen.add(step)
    first = path.index(path[-1])
    loop = path[first:]
    return " -> ".join(f"{a} (line {graph[a][b]})" for a, b in zip(loop, loop[1:])) + f" -> {loop[-1]}"


def research_imports(root: Path, packages=PRODUCT) -> list[str]:
    """Product files that import research/ (the package, or one of its scripts by module name)."""
    names = {RESEARCH} | {p.stem for p in (root / RESEARCH).glob("*.py")}
    found = []
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            rel = path.relative_to(root)
            module = ".".join(rel.with_suffix("").parts)
            lines = set()
            for target, line in imports(path, module):  # a statement's module comes before its names
                if target.split(".")[0] in names and line not in lines:
                    lines.add(line)
                    found.append(f"{rel}:{line} imports {target}")
    return found


def findings(root: Path) -> list[str]:
    graph = import_graph(root)
    return ([f"import cycle: {describe_cycle(graph, c)}" for c in cycles(graph)]
            + [f"product imports research: {f}" for f in research_imports(root)])


def test_the_checker_sees_a_cycle_through_a_lazy_import(tmp_path):
    pkg = tmp_path / "trainer"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from .b import f\n")
    (pkg / "b.py").write_text("def f():\n    from . import c\n")
    (pkg / "c.py").write_text("import trainer.a\n")
    (tmp_path / "converter").mkdir()
    (tmp_path / "edge").mkdir()
    (tmp_path / "edge" / "x.py").write_text("def g():\n    from research.probe import h\n")
    (tmp_path / RESEARCH).mkdir()
    (tmp_path / RESEARCH / "probe.py").write_text("from trainer.a import f\n")
    graph = import_graph(tmp_path)
    assert cycles(graph) == [["trainer.a", "trainer.b", "trainer.c"]]
    assert describe_cycle(graph, cycles(graph)[0]) == (
        "trainer.a (line 1) -> trainer.b (line 2) -> trainer.c (line 1) -> trainer.a")
    assert research_imports(tmp_path) == ["edge/x.py:2 imports research.probe"]


def test_no_import_cycle_in_trainer_or_converter_and_the_product_never_imports_research():
    graph = import_graph(REPO)
    assert len(graph) > 20 and "trainer.run" in graph and "converter.cli" in graph  # it read the real modules
    assert findings(REPO) == []


if __name__ == "__main__":
    problems = findings(Path(sys.argv[1]) if len(sys.argv) > 1 else REPO)
    print("\n".join(problems) or "no import cycle, no research import")
    sys.exit(1 if problems else 0)
