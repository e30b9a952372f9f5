"""The layering rules of docs/architecture.md, checked on the import statements of every module.

Imports inside ``if TYPE_CHECKING:`` count too: a type-only import is still a dependency a
reader has to follow.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CORE = ROOT / "gitopsd"
PLUGINS = ROOT / "plugins" / "gitopsd_plugins"

# Each layer of gitopsd/ may import only the layers listed for it (and itself).
LAYERS: dict[str, set[str]] = {
    "core": set(),
    "plugin": {"core"},
    "engine": {"core", "plugin"},
    "coord": {"core", "plugin"},
    "kube": {"core", "plugin", "engine", "coord"},
    "server": {"core", "plugin"},  # the daemon reaches it only through server/view.py's AppsView
    "daemon": {"core", "plugin", "engine", "coord", "kube", "server"},
    "cli": {"", "core", "plugin", "engine", "coord", "kube", "server", "daemon", "sandbox"},
    "sandbox": set(),
    "testing": {"", "core", "plugin", "engine", "server", "daemon", "sandbox"},
    "": {"core", "plugin"},  # gitopsd/__init__.py: the public surface for plugin authors
}
# Built-in plugins use only what a third-party plugin may: the public surface and the contract.
PLUGIN_ALLOWED = {"", "core", "plugin"}


def module_name(path: Path) -> str:
    base = ROOT / "plugins" if path.is_relative_to(PLUGINS) else ROOT
    parts = list(path.relative_to(base).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, package: str = "") -> set[str]:
    """Every module ``path`` imports, relative imports resolved against ``package``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            # ``from pkg import name``: name may be a submodule or an attribute of pkg.
            names.update(f"{base}.{alias.name}" for alias in node.names)
            if node.module:
                names.add(base)
    return names


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for root in (CORE, PLUGINS) for p in sorted(root.rglob("*.py"))}


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the project modules it imports (edges to its own parent packages left out)."""
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges = set()
        for imported in imported_modules(path, package):
            while imported and imported not in modules:
                imported = imported.rpartition(".")[0]
            if imported and imported != name and not name.startswith(imported + "."):
                edges.add(imported)
        graph[name] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def layer_of(module: str) -> str:
    """``gitopsd.engine.runner`` -> ``engine``; ``gitopsd`` -> ``""``; other packages -> their name."""
    parts = module.split(".")
    if parts[0] != "gitopsd":
        return parts[0]
    if len(parts) == 1:
        return ""
    return "cli" if parts[1] == "__main__" else parts[1]


def layer_violations(graph: dict[str, set[str]], allowed: dict[str, set[str]], names: Iterable[str]) -> list[str]:
    found = []
    for name in names:
        layer = layer_of(name)
        for imported in sorted(graph[name]):
            target = layer_of(imported)
            if imported.startswith("gitopsd.") or imported == "gitopsd":
                if target != layer and target not in allowed.get(layer, set()):
                    found.append(f"{name} ({layer or 'gitopsd'}) imports {imported} ({target or 'gitopsd'})")
    return found


def offenders(paths: list[Path], forbidden: str, allowed: frozenset[str] = frozenset()) -> list[str]:
    found = []
    for path in paths:
        rel = path.relative_to(ROOT).as_posix()
        if any(rel.startswith(a) for a in allowed):
            continue
        for name in imported_modules(path):
            if name == forbidden or name.startswith(forbidden + "."):
                found.append(f"{rel} imports {name}")
    return found


def modules(root: Path) -> list[Path]:
    return sorted(root.rglob("*.py"))


def test_modules_are_found() -> None:
    found = all_modules()
    assert {"gitopsd.engine.reconciler", "gitopsd.kube.cluster", "gitopsd_plugins.git"} <= found.keys()
    assert {layer_of(n) for n in found if n.startswith("gitopsd.")} - {""} <= LAYERS.keys()


def test_every_layer_imports_only_the_layers_below_it() -> None:
    graph = import_graph(all_modules())
    core = [n for n in graph if n == "gitopsd" or n.startswith("gitopsd.")]
    assert layer_violations(graph, LAYERS, core) == []


def test_builtin_plugins_use_only_the_public_surface() -> None:
    graph = import_graph(all_modules())
    builtins = [n for n in graph if n.startswith("gitopsd_plugins")]
    allowed = {"gitopsd_plugins": PLUGIN_ALLOWED}
    found = []
    for name in builtins:
        for imported in graph[name]:
            if imported == "gitopsd" or imported.startswith("gitopsd."):
                if layer_of(imported) not in allowed["gitopsd_plugins"]:
                    found.append(f"{name} imports {imported}")
    assert found == []


def test_no_import_cycles() -> None:
    assert cycles(import_graph(all_modules())) == []


def test_core_never_imports_builtin_plugins() -> None:
    assert offenders(modules(CORE), "gitopsd_plugins") == []


@pytest.mark.parametrize("root", [CORE, PLUGINS], ids=["core", "plugins"])
def test_kubernetes_asyncio_only_under_kube(root: Path) -> None:
    assert offenders(modules(root), "kubernetes_asyncio", frozenset({"gitopsd/kube/"})) == []


@pytest.mark.parametrize("root", [CORE, PLUGINS], ids=["core", "plugins"])
def test_asyncssh_only_in_the_tunnel_module(root: Path) -> None:
    assert offenders(modules(root), "asyncssh", frozenset({"gitopsd/kube/tunnel.py"})) == []


def test_the_checkers_see_violations(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import kubernetes_asyncio.client\nfrom asyncssh import connect\n")
    assert imported_modules(bad) == {"kubernetes_asyncio.client", "asyncssh", "asyncssh.connect"}
    graph = {"gitopsd.core.models": {"gitopsd.engine.runner"}, "gitopsd.engine.runner": {"gitopsd.core.models"}}
    assert cycles(graph) == [["gitopsd.core.models", "gitopsd.engine.runner"]]
    assert layer_violations(graph, LAYERS, graph) == ["gitopsd.core.models (core) imports gitopsd.engine.runner (engine)"]


def test_relative_imports_are_resolved(tmp_path: Path) -> None:
    module = tmp_path / "server.py"
    module.write_text("from .sandbox import Sandbox\nfrom . import managed\n")
    assert imported_modules(module, "gitopsd.sandbox") >= {"gitopsd.sandbox.sandbox", "gitopsd.sandbox.managed"}
