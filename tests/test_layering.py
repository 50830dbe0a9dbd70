"""Layering: `edge/` (what a device installs) never reaches for the desktop's code or its heavy stack, and
its modules import one another in one direction only (no cycles, not even ones dodged by a lazy import).

Read from the source text, not from what happens to be imported at run time, so an import inside a
function that no test calls is caught too. An import here is any of:
  - `import x` / `from x import y` anywhere (module level, functions, try blocks), relative ones resolved;
  - a string literal passed to importlib.import_module / __import__ / importlib.util.find_spec;
  - a dotted module name as a string constant (a runtime table, a `[python, "-m", "converter.build"]`
    argument list), and `-m NAME` inside a command string or after a "-m" list element.

    python tests/test_layering.py [EDGE_DIR]   the same checks on any directory (e.g. an old checkout)
"""

from __future__ import annotations

import ast
import re
import sys
from collections.abc import Iterator
from pathlib import Path

from import_cycles import cycles

REPO = Path(__file__).resolve().parents[1]
EDGE = REPO / "edge"
# The desktop's packages and the heavy stack a device never installs.
FORBIDDEN = ("trainer", "converter", "bench", "research",
             "tensorflow", "tf_keras", "keras", "keras_self_attention", "librosa")
# The one documented exception: the interpreter wrapper's lazy last resort, TensorFlow's `tf.lite`
# (edge/interpreter.py, _RUNTIMES), tried only when neither ai-edge-litert nor tflite-runtime imports.
ALLOWED = {("interpreter.py", "tensorflow.lite")}
IMPORT_CALLS = {"import_module", "__import__", "find_spec"}
IN_PROCESS = {"import", "from-import", *(f"{c}()" for c in IMPORT_CALLS)}  # what the cycle check follows
DOTTED = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+")
DASH_M = re.compile(r"(?:^|\s)-m\s+([A-Za-z_][\w.]*)")


def _docstrings(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                ids.add(id(first.value))
    return ids


def _resolve(package: str, level: int, module: str | None) -> str:
    """The absolute name of a (possibly relative) `from` import's module."""
    if not level:
        return module or ""
    parts = package.split(".")
    base = parts[: len(parts) - level + 1]
    return ".".join(base + ([module] if module else []))


def imports(source: str, package: str, root: Path | None = None) -> Iterator[tuple[int, str, str]]:
    """(line, module name, how) for every import the source makes, lazy or not, statement or string.

    `package` is the package the module lives in (for relative imports); `root` is that package's
    directory, used to tell `from . import submodule` (a module) from `from . import name` (the package)."""
    tree = ast.parse(source)
    docstrings = _docstrings(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, "import"
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(package, node.level, node.module)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                is_module = False
                if root is not None and base.split(".")[0] == package.split(".")[0]:
                    rel = Path(*sub.split(".")[1:])
                    is_module = (root / rel).with_suffix(".py").is_file() or (root / rel).is_dir()
                yield node.lineno, sub if is_module else base, "from-import"
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            if name in IMPORT_CALLS and node.args and isinstance(node.args[0], ast.Constant) \
                    and isinstance(node.args[0].value, str):
                yield node.lineno, node.args[0].value, f"{name}()"
        elif isinstance(node, (ast.List, ast.Tuple)):
            for a, b in zip(node.elts, node.elts[1:]):
                if isinstance(a, ast.Constant) and a.value == "-m" and isinstance(b, ast.Constant) \
                        and isinstance(b.value, str):
                    yield b.lineno, b.value, "-m argument"
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            text = node.value
            if DOTTED.fullmatch(text):
                yield node.lineno, text, "module name in a string"
            for m in DASH_M.finditer(text):
                yield node.lineno, m.group(1), "-m in a command string"


def edge_modules(root: Path = EDGE) -> dict[str, Path]:
    """Module name -> file for every .py file under the edge directory."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).with_suffix("")
        parts = [root.name, *rel.parts]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _package(name: str, path: Path) -> str:
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


def forbidden_imports(root: Path = EDGE) -> list[str]:
    """'file:line: module (how)' for each import of the desktop or the heavy stack, the allowed one aside."""
    found = []
    for name, path in edge_modules(root).items():
        rel = path.relative_to(root).as_posix()
        for line, module, how in imports(path.read_text(), _package(name, path), root):
            if module.split(".")[0] in FORBIDDEN and (rel, module) not in ALLOWED:
                found.append(f"{root.name}/{rel}:{line}: {module} ({how})")
    return found


def import_graph(root: Path = EDGE) -> dict[str, set[str]]:
    """edge module -> the edge modules it imports (every import statement or call, lazy ones too; not the
    module names in strings, which start other processes: `-m edge.cli` shares no import state)."""
    modules = edge_modules(root)
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        deps = set()
        for _, module, how in imports(path.read_text(), _package(name, path), root):
            if how not in IN_PROCESS:
                continue
            # the longest known module the name starts with (edge.bundle.load_bundle -> edge.bundle)
            while module and module not in modules:
                module = module.rpartition(".")[0]
            if module and module != name:
                deps.add(module)
        graph[name] = deps
    return graph


def _cycle_text(graph: dict[str, set[str]], component: list[str]) -> str:
    """One path around the cycle, e.g. edge.bundle -> edge.interpreter -> edge.bundle."""
    members = set(component)
    path = [component[0]]
    while True:
        nxt = sorted(graph[path[-1]] & members)
        step = next((n for n in nxt if n not in path), None)
        if step is None:
            back = next(n for n in nxt if n in path)
            return " -> ".join(path[path.index(back):] + [back])
        path.append(step)


# -- the tests ---------------------------------------------------------------------------------------
def test_edge_never_imports_the_desktop_or_its_heavy_stack():
    found = forbidden_imports()
    assert not found, "edge/ must not import these (see DESIGN.md: one direction of dependency):\n" + "\n".join(found)


def test_the_one_allowed_tensorflow_import_is_still_where_the_allow_list_says():
    # An allow-list entry that matches nothing would hide a moved or renamed fallback.
    for rel, module in ALLOWED:
        path = EDGE / rel
        found = {m for _, m, _ in imports(path.read_text(), "edge", EDGE)}
        assert module in found, f"{rel} no longer imports {module}: update ALLOWED"


def test_no_import_cycles_among_edge_modules():
    graph = import_graph()
    assert graph["edge.model"] >= {"edge.bundle", "edge.interpreter"}  # the graph is really read
    found = cycles(graph)
    assert not found, "import cycles in edge/:\n" + "\n".join(_cycle_text(graph, c) for c in found)


def test_the_scanner_sees_every_form_of_import(tmp_path):
    edge = tmp_path / "edge"
    edge.mkdir()
    (edge / "__init__.py").write_text('"""A docstring naming trainer.model is no import."""\n')
    (edge / "a.py").write_text(
        "import os\n"
        "from . import b\n"
        "def f():\n"
        "    import tensorflow as tf\n"
        "    from trainer.model import build_model\n"
        "    import librosa.feature\n"
        "def g():\n"
        "    import importlib\n"
        "    importlib.import_module('tf_keras')\n"
        "    __import__('keras_self_attention')\n"
        "    cmd = [sys.executable, '-m', 'converter.build', 'spec.json']\n"
        "    cmd2 = [sys.executable, '-m', 'bench']\n"
        "    shell = 'python -m research.probe --fast'\n"
        "    table = ('keras.layers', 'edge.bench_rows')\n"
        "    try:\n"
        "        from bench.rows import ROWS\n"
        "    except ImportError:\n"
        "        pass\n"
    )
    (edge / "b.py").write_text("from .a import f\nPACKAGES = ('tensorflow', 'librosa')  # metadata names, not imports\n")
    found = {line.split(": ", 1)[1] for line in forbidden_imports(edge)}
    assert found == {
        "tensorflow (import)", "trainer.model (from-import)", "librosa.feature (import)", "tf_keras (import_module())",
        "keras_self_attention (__import__())", "converter.build (-m argument)", "converter.build (module name in a string)",
        "bench (-m argument)", "research.probe (-m in a command string)", "keras.layers (module name in a string)",
        "bench.rows (from-import)",
    }, found
    graph = import_graph(edge)
    assert graph == {"edge": set(), "edge.a": {"edge.b"}, "edge.b": {"edge.a"}}, graph
    assert [_cycle_text(graph, c) for c in cycles(graph)] == ["edge.a -> edge.b -> edge.a"]


def main(argv: list[str]) -> int:
    root = Path(argv[0]).resolve() if argv else EDGE
    graph = import_graph(root)
    problems = forbidden_imports(root) + [f"cycle: {_cycle_text(graph, c)}" for c in cycles(graph)]
    print("\n".join(problems) or f"{root}: no forbidden imports, no cycles")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
