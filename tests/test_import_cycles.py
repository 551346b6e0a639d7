"""The project's modules import each other without a cycle, and ``kernels/`` imports nothing
from ``mrcnn_np/``: the NumPy reference computes what a kernel needs and hands it in.

An ``ast`` walk over every ``import`` statement of ``mrcnn_np/`` and ``kernels/``, function-
local imports included (they only hide a cycle from the interpreter, not from a reader).
"""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("mrcnn_np", "kernels")


def _modules():
    """dotted name -> path, for every .py file of the project's packages."""
    out = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def _imports(name, path, modules):
    """The project modules that ``name`` imports (at top level or inside a function)."""
    is_pkg = path.name == "__init__.py"
    package = name if is_pkg else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            # ``from pkg import sub`` imports the module pkg.sub when there is one
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                       for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in modules:  # ``import a.b.c`` -> the deepest project module
                t = t.rpartition(".")[0]
            if t and t != name:
                found.add(t)
    return found


def import_graph():
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def find_cycle(graph):
    """One cycle as a list of module names (first == last), or None."""
    WHITE, GREY, BLACK = 0, 1, 2
    colour = dict.fromkeys(graph, WHITE)
    stack = []

    def visit(u):
        colour[u] = GREY
        stack.append(u)
        for v in sorted(graph[u]):
            if colour[v] == GREY:
                return stack[stack.index(v):] + [v]
            if colour[v] == WHITE:
                cycle = visit(v)
                if cycle:
                    return cycle
        stack.pop()
        colour[u] = BLACK
        return None

    for u in sorted(graph):
        if colour[u] == WHITE:
            cycle = visit(u)
            if cycle:
                return cycle
    return None


def test_the_graph_sees_the_imports_it_must():
    graph = import_graph()
    assert "mrcnn_np.ops.roi_align" in graph["mrcnn_np.ops.poolers"]       # from .roi_align import
    assert "kernels.roi_align_numba" in graph["mrcnn_np.ops.roi_align"]    # function-local import
    assert "mrcnn_np.nn.init" in graph["mrcnn_np.roi_heads"]               # from .nn import init
    assert "mrcnn_np.ops._backend" in graph["mrcnn_np.ops"]                # a package's __init__


def test_find_cycle_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycles():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_kernels_import_nothing_from_mrcnn_np():
    graph = import_graph()
    bad = {k: sorted(v) for k, v in graph.items()
           if k.startswith("kernels") and any(m.startswith("mrcnn_np") for m in v)}
    assert not bad, bad
