"""The YAML budget of a whole render (issue 13): bytes, documents, depth and alias expansions."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from gitopsd import RenderError
from gitopsd.core.yamlio import YamlBudget, check_depth, load_all, manifests_from_yaml
from gitopsd_plugins.plain import render_directory

# 303 bytes: 9^6 scalars behind aliases, just under the per-document limit of 1,000,000 nodes.
SMALL_BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [" + ", ".join([f"*{chr(97 + i)}"] * 9) + "]\n" for i in range(5)
) + "kind: ConfigMap\napiVersion: v1\nmetadata: {name: bomb}\n"


def test_sixteen_small_bombs_fail_the_render_fast(tmp_path: Path) -> None:
    """Each document passes the per-document limit; together they exceed the render's alias budget."""
    load_all(SMALL_BOMB, "one.yaml")  # one alone is accepted
    (tmp_path / "bombs.yaml").write_text("---\n".join(SMALL_BOMB.replace("bomb", f"bomb{i}") for i in range(16)))
    with pytest.raises(RenderError, match=r"bombs.yaml: document 1: YAML budget max_alias_expansions exceeded"):
        render_directory(tmp_path)


def test_bombs_spread_over_files_share_one_budget(tmp_path: Path) -> None:
    for i in range(4):
        (tmp_path / f"{i}.yaml").write_text(SMALL_BOMB)
    with pytest.raises(RenderError, match=r"1.yaml: document 0: YAML budget max_alias_expansions exceeded"):
        render_directory(tmp_path)


@pytest.mark.parametrize("text", [
    "a: " + "[" * 100_000 + "]" * 100_000 + "\n",
    "a: " + "{a: " * 5000 + "x" + "}" * 5000 + "\n",
    "- " * 5000 + "x\n",
    "".join(" " * i + "k:\n" for i in range(3000)) + " " * 3000 + "v\n",
], ids=["flow-seq", "flow-map", "block-seq", "block-map"])
def test_deep_nesting_is_refused_before_parsing(text: str) -> None:
    limit = sys.getrecursionlimit()
    start = time.process_time()
    with pytest.raises(RenderError, match=r"deep.yaml: document 0 line \d+: YAML budget max_depth exceeded: nested "
                                          r"deeper than 100 levels"):
        load_all(text, "deep.yaml")
    assert sys.getrecursionlimit() == limit
    assert time.process_time() - start < 30  # generous: it must not build 100,000 levels of objects


def test_ordinary_manifests_pass_the_depth_check() -> None:
    deep_ok = "a:\n" + "".join("  " * (i + 1) + f"k{i}:\n" for i in range(60)) + "  " * 61 + "v\n"
    check_depth(deep_ok, "ok.yaml", 100)
    assert manifests_from_yaml('{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, '
                               '"data": {"s": "[[[[[[[[[[[[[[[[[["}}', "x.yaml")


def test_document_and_byte_budgets(tmp_path: Path) -> None:
    docs = "---\n".join(f'{{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {{"name": "c{i}"}}}}\n' for i in range(30))
    with pytest.raises(RenderError, match=r"many.yaml: YAML budget max_documents exceeded: more than 20 documents"):
        manifests_from_yaml(docs, "many.yaml", YamlBudget(max_documents=20))
    budget = YamlBudget(max_bytes=len(docs) + 100)
    manifests_from_yaml(docs, "a.yaml", budget)
    with pytest.raises(RenderError, match=r"b.yaml: YAML budget max_bytes exceeded: [\d,]+ bytes of YAML "
                                          r"\(limit [\d,]+ for the whole render\)"):
        manifests_from_yaml(docs, "b.yaml", budget)
