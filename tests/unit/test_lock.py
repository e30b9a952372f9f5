"""The lock files pin a version for every dependency pyproject.toml asks for, inside its range.

`make setup` installs requirements/dev-lock.txt with --no-deps, so a dependency added to
pyproject.toml without `make lock` would be missing at run time; this test names it.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "requirements" / "lock.txt"
DEV_LOCK = ROOT / "requirements" / "dev-lock.txt"
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")


def pins(path: Path) -> dict[str, str]:
    """name -> version of every ``name==version`` line; every pin must carry hashes."""
    found: dict[str, str] = {}
    lines = path.read_text().splitlines()
    for i, line in enumerate(lines):
        match = _PIN.match(line)
        if match:
            assert line.rstrip().endswith("\\") and "--hash=sha256:" in lines[i + 1], (
                f"{path.name}: {match.group(1)} has no hash"
            )
            found[canonicalize_name(match.group(1))] = match.group(2)
    return found


def requirements(pyproject: Path, *extras: str) -> list[Requirement]:
    project = tomllib.loads(pyproject.read_text())["project"]
    reqs = [Requirement(r) for r in project.get("dependencies", [])]
    for extra in extras:
        reqs += [Requirement(r) for r in project["optional-dependencies"][extra]]
    return [r for r in reqs if canonicalize_name(r.name) != "gitopsd"]


def unmet(reqs: list[Requirement], locked: dict[str, str]) -> list[str]:
    problems = []
    for req in reqs:
        if req.marker is not None and not req.marker.evaluate():
            continue
        version = locked.get(canonicalize_name(req.name))
        if version is None:
            problems.append(f"{req.name}: not in the lock")
        elif not req.specifier.contains(version, prereleases=True):
            problems.append(f"{req.name}: locked {version}, pyproject asks {req.specifier}")
    return problems


@pytest.mark.parametrize(
    ("lock", "pyproject", "extras"),
    [
        (LOCK, ROOT / "pyproject.toml", ()),
        (DEV_LOCK, ROOT / "pyproject.toml", ("dev",)),
        (DEV_LOCK, ROOT / "examples" / "gitopsd-example-plugin" / "pyproject.toml", ()),
    ],
    ids=["runtime", "dev", "example-plugin"],
)
def test_lock_satisfies_pyproject(lock: Path, pyproject: Path, extras: tuple[str, ...]) -> None:
    problems = unmet(requirements(pyproject, *extras), pins(lock))
    assert not problems, f"{lock.relative_to(ROOT)} is stale, run `make lock`: " + "; ".join(problems)


def test_dev_lock_pins_the_runtime_set_identically() -> None:
    runtime, dev = pins(LOCK), pins(DEV_LOCK)
    differ = {n: (v, dev.get(n)) for n, v in runtime.items() if dev.get(n) != v}
    assert not differ, f"dev-lock.txt and lock.txt disagree (run `make lock`): {differ}"


def test_unmet_names_a_missing_and_an_out_of_range_dependency() -> None:
    reqs = [Requirement("httpx>=0.27"), Requirement("newdep>=1")]
    assert unmet(reqs, {"httpx": "0.26.0"}) == [
        "httpx: locked 0.26.0, pyproject asks >=0.27",
        "newdep: not in the lock",
    ]
