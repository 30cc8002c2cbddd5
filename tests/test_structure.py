"""The library's shape: no import cycle between its modules, counting the imports made
inside functions too (a cycle closed by a function-local import still ties the modules
together: neither can be read, tested or replaced alone)."""

from __future__ import annotations

import ast
import pathlib

LIB = pathlib.Path(__file__).resolve().parent.parent / "lib" / "implicit_bias"


def module_name(path: pathlib.Path, root: pathlib.Path = LIB) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(root: pathlib.Path = LIB) -> dict:
    """module → the library modules it imports anywhere in its file (relative imports;
    ``from . import x`` counts as importing ``x``, not the package)."""
    files = {module_name(p, root): p for p in root.rglob("*.py")}
    graph = {}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.ImportFrom) and node.level):
                continue
            base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
            target = ".".join(base + ([node.module] if node.module else []))
            if node.module and target in files:
                deps.add(target)
            deps |= {f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in files}
        graph[name] = deps - {name}
    return graph


def cycles(graph: dict) -> list:
    """The strongly connected components with more than one module (Tarjan)."""
    index, low, on, stack, found = {}, {}, set(), [], []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_no_import_cycle():
    graph = import_graph()
    assert len(graph) > 30 and "implicit_bias.train" in graph
    assert cycles(graph) == [], "modules that import each other (also inside functions)"


def test_the_cycle_check_finds_a_function_local_cycle(tmp_path):
    """The mutant: two modules that import each other, one only inside a function."""
    pkg = tmp_path / "implicit_bias"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from .b import g\n\ndef f():\n    return g()\n")
    (pkg / "b.py").write_text("def g():\n    from . import a\n    return a\n")
    (pkg / "c.py").write_text("from . import a\n")
    assert cycles(import_graph(pkg)) == [["implicit_bias.a", "implicit_bias.b"]]


def code_lines(path: pathlib.Path) -> dict:
    """``module:function`` → its lines, without its docstring, for every function in a file."""
    out = {}
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            lines = node.end_lineno - node.lineno + 1
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) \
                    and isinstance(first.value.value, str):
                lines -= first.end_lineno - first.lineno + 1
            out[f"{module_name(path)}:{node.name}"] = lines
    return out


def test_functions_read_top_to_bottom():
    """No library function over 80 lines of code, and the two hubs, ``train.train`` and the
    batched engine's ``train_group``, within 60 (docstrings not counted)."""
    lines = {name: n for path in LIB.rglob("*.py") for name, n in code_lines(path).items()}
    assert {name: n for name, n in lines.items() if n > 80} == {}
    assert lines["implicit_bias.train:train"] <= 60
    assert lines["implicit_bias.batched:train_group"] <= 60
