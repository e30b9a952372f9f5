"""gitopsd.core.lazypkg: a package whose ``__init__`` runs only when something else than a submodule is asked of it.

Each case runs in a fresh interpreter (lazy registration changes ``sys.modules``) on a small
package written to a temporary directory: ``pkg/__init__.py`` records that it ran and
imports ``pkg.heavy``; ``pkg.light`` and the subpackage ``pkg.sub`` (whose ``__init__`` does
the same with ``pkg.sub.heavy``) are what a user imports without them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

FILES = {
    "pkg/__init__.py": '__version__ = "1.2.3"\nimport sys\nsys.ran.append("pkg")\nfrom pkg import heavy\nNAME = heavy.NAME\n',
    "pkg/heavy.py": 'NAME = "heavy"\n',
    "pkg/light.py": 'from pkg import __version__\nVERSION = __version__\n',
    "pkg/sub/__init__.py": 'import sys\nsys.ran.append("pkg.sub")\nfrom pkg.sub import heavy\nNAME = heavy.NAME\n',
    "pkg/sub/heavy.py": 'NAME = "sub heavy"\n',
    "pkg/sub/light.py": 'VALUE = 1\n',
}


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    for name, text in FILES.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    return tmp_path


def run(tree: Path, code: str) -> dict[str, object]:
    """Run ``code`` (which sets ``out``) with the package importable; return ``out`` plus what ran."""
    script = f"import json, sys\nsys.ran = []\nsys.path.insert(0, {str(tree)!r})\nfrom gitopsd.core.lazypkg import is_lazy, lazy_package\n{code}\nout['ran'] = sys.ran\nprint(json.dumps(out))\n"
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    result: dict[str, object] = json.loads(proc.stdout.splitlines()[-1])
    return result


def test_submodule_without_init_then_init_on_attribute(tree: Path) -> None:
    out = run(tree, """
out = {"registered": lazy_package("pkg", copy=("__version__",))}
import pkg.light
out["version"] = pkg.light.VERSION
out["lazy_after_submodule"] = is_lazy("pkg")
out["before"] = list(sys.ran)
out["name"] = pkg.NAME
out["lazy_after_attribute"] = is_lazy("pkg")
out["again"] = lazy_package("pkg")
""")
    assert out["registered"] and out["version"] == "1.2.3"
    assert out["lazy_after_submodule"] and out["before"] == []
    assert out["name"] == "heavy" and not out["lazy_after_attribute"]
    assert out["ran"] == ["pkg"] and out["again"] is False


def test_subpackage_of_a_stand_in_parent(tree: Path) -> None:
    """What kube/k8s.py does with kubernetes_asyncio.client: the parent is a stand-in with a ``__path__``."""
    out = run(tree, f"""
import types
stand_in = types.ModuleType("pkg")
stand_in.__path__ = [{str(tree / "pkg")!r}]
sys.modules["pkg"] = stand_in
out = {{"registered": lazy_package("pkg.sub")}}
out["attribute"] = stand_in.sub is sys.modules["pkg.sub"]
import pkg.sub.light
out["lazy_after_submodule"] = is_lazy("pkg.sub")
out["before"] = list(sys.ran)
out["name"] = pkg.sub.NAME
out["missing"] = lazy_package("pkg.nothing")
out["orphan"] = lazy_package("nothing.sub")
""")
    assert out["registered"] and out["attribute"]
    assert out["lazy_after_submodule"] and out["before"] == []
    assert out["name"] == "sub heavy" and out["ran"] == ["pkg.sub"]
    assert out["missing"] is False and out["orphan"] is False


def test_missing_constant_leaves_the_package_alone(tree: Path) -> None:
    out = run(tree, """
out = {"registered": lazy_package("pkg", copy=("__author__",)), "lazy": is_lazy("pkg"), "imported": "pkg" in sys.modules}
""")
    assert out == {"registered": False, "lazy": False, "imported": False, "ran": []}
