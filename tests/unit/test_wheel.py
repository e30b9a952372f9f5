"""The wheel carries package data: any non-.py file under gitopsd/ (templates, static assets)
lands in it, next to the pytest kit. Built with the locked hatchling, no network."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def build_wheel(source: Path, out: Path) -> set[str]:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(source)],
        check=True, capture_output=True,
    )
    with zipfile.ZipFile(next(out.glob("gitopsd-*.whl"))) as z:
        return set(z.namelist())


def package_data(root: Path) -> set[str]:
    return {
        str(p.relative_to(root))
        for p in (root / "gitopsd").rglob("*")
        if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts
    }


def test_every_non_python_file_under_gitopsd_lands_in_the_wheel(tmp_path: Path) -> None:
    # A copy of the sources with web assets such as the server will ship, so the check has
    # something to find today and keeps guarding the build config once real assets arrive.
    copy = tmp_path / "src"
    copy.mkdir()
    for name in ("gitopsd", "plugins"):
        shutil.copytree(ROOT / name, copy / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("pyproject.toml", "README.md", ".gitignore"):
        shutil.copy(ROOT / name, copy / name)
    for rel, text in {
        "gitopsd/server/templates/apps.html": "<h1>{{ title }}</h1>\n",
        "gitopsd/server/static/app.js": "export {};\n",
        "gitopsd/server/static/img/logo.svg": "<svg/>\n",
    }.items():
        (copy / rel).parent.mkdir(parents=True, exist_ok=True)
        (copy / rel).write_text(text)
    names = build_wheel(copy, tmp_path / "dist")
    wanted = package_data(copy)
    assert {"gitopsd/server/static/app.js", "gitopsd/server/templates/apps.html"} <= wanted
    assert wanted - names == set()
    assert "gitopsd/testing/plugin.py" in names
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    with zipfile.ZipFile(next((tmp_path / "dist").glob("gitopsd-*.whl"))) as z:
        assert "gitopsd = gitopsd.testing.plugin" in z.read(entry_points).decode()
