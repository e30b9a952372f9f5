"""The config's TOML parser (gitopsd/plugin/tomlread.py): rtoml's speed, tomli's values and errors."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import pytest
import tomli

from gitopsd.plugin import tomlread

ROOT = Path(__file__).resolve().parents[2]

# TOML 1.0 and 1.1 corners (tomli 2.5 reads some of 1.1), valid and invalid ones.
DOCUMENTS = [
    'z = 1\na = 2\n[zz]\nq = 1\nb = 2\n[aa.c]\nx = 1\n[aa]\ny = 1\n[[t]]\nk = 1\n[m]\nz = {c = 1, a = 2}\n',
    'a = nan\nb = -inf\nc = +inf\nd = 1e400\ne = 0xDEAD\nf = 0o17\ng = 0b11\nh = 1_000\ni = -0.0\n',
    'a = "null"\nb = "None"\nc = ""\n"" = 1\n"ü" = 2\nd = \'\'\'x\\y\'\'\'\ne = """\nfoo \\\n  bar"""\n',
    "a = 1979-05-27T07:32:00\nb = 1979-05-27\nc = 07:32:00.5\nd = 1979-05-27 07:32:00\n",
    "a = 1979-05-27T07:32:00Z\nb = 1979-05-27T00:32:00.999-07:00\nc = 1979-05-27t07:32:00z\n",
    "a = 9223372036854775807\nb = -9223372036854775808\nc = [1, \"x\", {d = [2]}]\n",
    "[a.b]\nx = 1\n[a]\nb.y = 2\n[apps.web]\nsource = { type = \"git\", url = \"https://example.com/r.git\" }\n",
    "",
    "a = 1\na = 2",
    "[a]\nx = 1\n[a]\ny = 2",
    "a = {x = 1}\n[a]\ny = 2",
    "a = {x = 1,}",
    "a = {x = 1,\ny = 2}",
    "a = 01",
    "a = 9223372036854775808",
    'a = "\\q"',
    'a = "x\x01y"',
    "a = 1\r",
    "a = 07:32",
    "[a] x = 1",
    "[[a]]\nx = 1\n[a]\ny = 2",
    "a = .5",
    "a =",
    "= 1",
    "[apps.web\ncluster = 'x'",
    'a = "unterminated',
]


def _same(a: object, b: object) -> bool:
    """Equal, keys in the same order, and the same types (a time zone's class too)."""
    return json.dumps(a, default=repr) == json.dumps(b, default=repr)


def test_rtoml_is_installed() -> None:
    """It is a dependency: without it every start parses the config several times more slowly."""
    assert tomlread.rtoml is not None


@pytest.mark.parametrize("doc", DOCUMENTS)
def test_same_as_tomli(doc: str) -> None:
    """The values tomli reads, or the error tomli raises, word for word."""
    try:
        expected = tomli.loads(doc)
    except tomli.TOMLDecodeError as exc:
        with pytest.raises(tomlread.TOMLDecodeError) as got:
            tomlread.loads(doc)
        assert str(got.value) == str(exc)
    else:
        assert _same(tomlread.loads(doc), expected)


def test_both_kinds_of_document_are_covered() -> None:
    errors = 0
    for doc in DOCUMENTS:
        try:
            tomli.loads(doc)
        except tomli.TOMLDecodeError:
            errors += 1
    assert 10 <= errors <= len(DOCUMENTS) - 10


@pytest.mark.parametrize("path", [ROOT / "config.example.toml", ROOT / "examples" / "demo.toml"], ids=lambda p: p.name)
def test_same_values_for_the_shipped_configs(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert _same(tomlread.loads(text), tomli.loads(text))


def test_offset_datetimes_have_the_standard_time_zone_class() -> None:
    value = tomlread.loads("a = 1979-05-27T00:32:00-07:00")["a"]
    assert type(value.tzinfo) is datetime.timezone
    assert value.utcoffset() == datetime.timedelta(hours=-7)

