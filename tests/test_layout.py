"""The package's shape: no two modules of ``mailer`` import each other, however indirectly,
and no module is longer than a reader takes in at once.

The import graph is read from the source (the AST), so an import inside a
function counts as much as one at the top: moving an import into a function
hides a cycle from Python, not from this test.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "mailer"


def module_name(path: Path, package: Path) -> str:
    parts = list(path.relative_to(package.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules(package: Path) -> dict[str, Path]:
    return {module_name(path, package): path for path in sorted(package.rglob("*.py"))}


def imported(name: str, path: Path, known: set[str]) -> set[str]:
    """The ``mailer`` modules that module ``name`` imports, anywhere in its body."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package, one level up per extra dot
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            # ``from a import b`` imports a, and a.b when b is a module.
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for target in targets:
            # ``import a.b.c`` imports a, a.b and a.b.c: the deepest known one stands for them.
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    found = modules(package)
    known = set(found)
    return {name: imported(name, path, known) for name, path in found.items()}


def is_ancestor(package: str, module: str) -> bool:
    """Python imports a module's packages first; that edge alone is not a cycle to report."""
    return module.startswith(package + ".")


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def edges(name: str) -> list[str]:
        # A package's __init__ importing its own submodules is how packages re-export;
        # the reverse edge (a submodule importing its package) is implied by Python.
        return sorted(t for t in graph[name] if not is_ancestor(t, name))

    def visit(name: str) -> None:
        index[name] = low[name] = len(index)
        stack.append(name)
        on_stack.add(name)
        for target in edges(name):
            if target not in index:
                visit(target)
                low[name] = min(low[name], low[target])
            elif target in on_stack:
                low[name] = min(low[name], index[target])
        if low[name] == index[name]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == name:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for name in sorted(graph):
        if name not in index:
            visit(name)
    return sorted(found)


def test_the_graph_sees_imports_of_every_kind(tmp_path: Path) -> None:
    root = tmp_path / "mailer"
    files = {
        "__init__.py": "",
        "a.py": "import mailer.sub.deep\n",
        "b.py": "def late() -> None:\n    from mailer import a\n",
        "sub/__init__.py": "from . import deep\nfrom .deep import thing\n",
        "sub/deep.py": "from ..b import late\nimport json\nthing = 1\n",
        "sub/other.py": "from .. import a\nfrom ..sub.deep import thing\n",
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")
    assert import_graph(root) == {
        "mailer": set(),
        "mailer.a": {"mailer.sub.deep"},
        "mailer.b": {"mailer", "mailer.a"},  # inside a function counts
        "mailer.sub": {"mailer.sub.deep"},  # relative, from a package's __init__
        "mailer.sub.deep": {"mailer.b"},  # two dots: up one package; json is not ours
        "mailer.sub.other": {"mailer", "mailer.a", "mailer.sub.deep"},
    }
    graph = import_graph()
    assert {"mailer.store.models", "mailer.store.engine"} <= graph["mailer.store"]


def test_cycles_are_found_in_a_graph_that_has_them() -> None:
    graph = {
        "mailer.a": {"mailer.b"},
        "mailer.b": {"mailer.c"},
        "mailer.c": {"mailer.a"},
        "mailer.d": {"mailer.a"},
        "mailer.p": {"mailer.p.x"},  # a package importing its submodule
        "mailer.p.x": set(),
    }
    assert cycles(graph) == [["mailer.a", "mailer.b", "mailer.c"]]


def test_no_module_of_the_package_imports_itself_through_others() -> None:
    found = cycles(import_graph())
    assert not found, "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


# A module that needs more lines than this wants splitting along its seams. The
# declarative settings and the migrations (frozen schema snapshots) are exempt.
MAX_LINES = 520
LONG_BY_NATURE = {"mailer.config"}


def test_no_module_is_longer_than_about_500_lines() -> None:
    long = {
        name: lines
        for name, path in modules(PACKAGE).items()
        if ".migrations." not in name
        and name not in LONG_BY_NATURE
        and (lines := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert not long, f"modules over {MAX_LINES} lines: {long}"
