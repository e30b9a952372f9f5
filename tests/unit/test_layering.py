"""The rules of the house (DESIGN.md), checked on the import statements of every module."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CORE = ROOT / "gitopsd"
PLUGINS = ROOT / "plugins" / "gitopsd_plugins"


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def modules(root: Path) -> list[Path]:
    return sorted(root.rglob("*.py"))


def offenders(paths: list[Path], forbidden: str, allowed: set[str] = frozenset()) -> list[str]:  # type: ignore[assignment]
    found = []
    for path in paths:
        rel = path.relative_to(ROOT).as_posix()
        if any(rel.startswith(a) for a in allowed):
            continue
        for name in imported_modules(path):
            if name == forbidden or name.startswith(forbidden + "."):
                found.append(f"{rel} imports {name}")
    return found


def test_modules_are_found() -> None:
    assert len(modules(CORE)) > 10 and len(modules(PLUGINS)) >= 2


def test_core_never_imports_builtin_plugins() -> None:
    assert offenders(modules(CORE), "gitopsd_plugins") == []


@pytest.mark.parametrize("root", [CORE, PLUGINS], ids=["core", "plugins"])
def test_kubernetes_asyncio_only_under_kube(root: Path) -> None:
    assert offenders(modules(root), "kubernetes_asyncio", {"gitopsd/kube/"}) == []


@pytest.mark.parametrize("root", [CORE, PLUGINS], ids=["core", "plugins"])
def test_asyncssh_only_in_the_tunnel_module(root: Path) -> None:
    assert offenders(modules(root), "asyncssh", {"gitopsd/kube/tunnel.py"}) == []


def test_the_checker_sees_a_violation(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import kubernetes_asyncio.client\nfrom asyncssh import connect\n")
    assert imported_modules(bad) == {"kubernetes_asyncio.client", "asyncssh"}


def test_the_http_server_knows_the_daemon_only_through_its_view_protocol() -> None:
    """gitopsd/server depends on gitopsd.server.view.AppsView, never on the engine (no import cycle)."""
    assert offenders(modules(CORE / "server"), "gitopsd.engine") == []
