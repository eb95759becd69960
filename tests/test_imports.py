"""The import graph of lm/ and experiments/: no cycles, and no `_private` name taken from another file.

Read with `ast` (nothing is imported), so it runs in well under a second. Imports inside functions
count: a lazy import that closes a cycle is still a cycle a reader has to untangle.
"""

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ("lm", "experiments")

# Issue 26 item 1 (one config system) removes this cycle; delete the entry when it lands (the test
# below fails while a listed cycle no longer exists, so the list can only shrink).
PENDING_CYCLES: set[frozenset[str]] = set()


def _modules() -> dict[str, pathlib.Path]:
    files = [f for p in PACKAGES for f in (ROOT / p).rglob("*.py")]
    return {".".join(f.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): f for f in files}


def _imports(name: str, path: pathlib.Path, modules) -> list[tuple[int, str, str | None]]:
    """(line, module, imported name or None) for every import of a project module in `path`."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name, None) for a in node.names if a.name in modules]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            for a in node.names:
                full = f"{base}.{a.name}"
                if full in modules:                      # `from pkg import module`
                    out.append((node.lineno, full, None))
                elif base in modules:
                    out.append((node.lineno, base, a.name))
    return out


def import_graph(modules) -> dict[str, set[str]]:
    return {m: {dep for _, dep, _ in _imports(m, f, modules) if dep != m} for m, f in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root), on_stack.add(root)
        while work:
            v, children = work[-1]
            w = next(children, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w), on_stack.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = set()
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.add(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(frozenset(comp))
    return out


def test_no_import_cycles():
    found = set(cycles(import_graph(_modules())))
    assert found - PENDING_CYCLES == set(), f"import cycles: {[sorted(c) for c in found - PENDING_CYCLES]}"
    assert PENDING_CYCLES <= found, (f"{[sorted(c) for c in PENDING_CYCLES - found]} is gone: delete it "
                                     "from PENDING_CYCLES")


def test_no_private_names_across_files():
    modules = _modules()
    bad = [f"{f.relative_to(ROOT)}:{line} imports {dep}.{name}"
           for m, f in modules.items() for line, dep, name in _imports(m, f, modules)
           if name and name.startswith("_") and not name.startswith("__") and dep != m]
    assert not bad, "private names imported from another file (make them public where they belong):\n" + \
        "\n".join(bad)


def test_the_scan_sees_cycles_and_private_imports(tmp_path):
    """The checks above on a made-up package: a cycle through a lazy import, a private import."""
    pkg = tmp_path / "lm"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from lm.b import public\n")
    (pkg / "b.py").write_text("def public():\n    from lm import a\n")
    (pkg / "c.py").write_text("from .a import _hidden\n")
    modules = {".".join(f.relative_to(tmp_path).with_suffix("").parts).removesuffix(".__init__"): f
               for f in pkg.rglob("*.py")}
    assert cycles(import_graph(modules)) == [frozenset({"lm.a", "lm.b"})]
    assert _imports("lm.c", pkg / "c.py", modules) == [(1, "lm.a", "_hidden")]
