"""The YAML budget of a whole render (issue 13): bytes, documents, depth and alias expansions."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import pytest

from gitopsd import RenderError
from gitopsd.core.yamlio import YamlBudget, check_depth, load_all, manifests_from_yaml
from gitopsd_plugins.plain import render_directory
from tests.calls import python_calls

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
    # libyaml also breaks lines at CR, NEL (U+0085) and LS (U+2028): 300 levels each
    *("".join(" " * i + "k:" + brk for i in range(300)) + " " * 300 + "v" + brk for brk in ("\r", "\x85", "\u2028")),
], ids=["flow-seq", "flow-map", "block-seq", "block-map", "block-map-cr", "block-map-nel", "block-map-ls"])
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


# -- the quick constructor (yamlio._Loader): same values as PyYAML's, same limits ----------------

EVERY_KIND = """\
apiVersion: v1
kind: ConfigMap
metadata: {name: every-kind, labels: {a: "1"}}
data:
  str: text
  quoted: "123"
  int: 42
  octal: 0o17
  float: 1.5
  bool: yes
  null: ~
  date: 2024-01-02
  time: 2024-01-02T03:04:05Z
  binary: !!binary aGVsbG8=
  list: [1, two, {three: 3}]
  1: int key
  dup: first
  dup: last
  anchored: &s shared scalar
  again: *s
---
base: &base {a: 1, b: 2}
merged:
  <<: *base
  c: 3
tagged_set: !!set {x, y}
omap: !!omap [{k: v}]
---
list: &l [1, 2]
twice: [*l, *l]
"""


def test_quick_constructor_gives_what_pyyaml_gives() -> None:
    import yaml

    expected = [d for d in yaml.safe_load_all(EVERY_KIND) if d is not None]
    got = [doc for _, doc in load_all(EVERY_KIND, "every.yaml")]
    assert got == expected
    # Keys are interned (the memory saving of yamlio.compact) on either path.
    for doc in got:
        for key in doc:
            if isinstance(key, str):
                assert key is sys.intern(key)
    # The aliased list became two separate lists (no shared objects handed out).
    assert got[2]["twice"][0] is not got[2]["twice"][1]


def test_quick_constructor_still_counts_nodes(monkeypatch: pytest.MonkeyPatch) -> None:
    """A document without aliases is still bounded by MAX_EXPANDED_NODES (it counts its nodes)."""
    import gitopsd.core.yamlio as yamlio

    monkeypatch.setattr(yamlio, "MAX_EXPANDED_NODES", 20)
    small = "kind: ConfigMap\napiVersion: v1\nmetadata: {name: a}\n"
    assert load_all(small, "small.yaml")
    big = small + "data: {" + ", ".join(f"k{i}: v" for i in range(10)) + "}\n"
    with pytest.raises(RenderError, match=r"big.yaml: document 0: YAML aliases expand to more than 20 nodes"):
        load_all(big, "big.yaml")


def test_unknown_tag_and_unhashable_key_keep_pyyaml_errors() -> None:
    with pytest.raises(RenderError, match=r"tag.yaml: document 0 line 1: invalid YAML: could not determine a constructor"):
        load_all("a: !Ref x\n", "tag.yaml")
    with pytest.raises(RenderError, match=r"key.yaml: document 0 line 1: invalid YAML: found unhashable key"):
        load_all("? [a]\n: b\n", "key.yaml")


def test_compact_interns_keys_at_every_depth() -> None:
    from gitopsd.core.yamlio import compact

    def fresh(text: str) -> str:
        return "".join(list(text))  # an equal string that is not the interned one

    key = fresh("containerPort")
    assert key is not sys.intern("containerPort")
    value = {fresh("spec"): {fresh("ports"): [{key: 80, fresh("name"): None}, [{fresh("deep"): 1.5}]]}, 1: True}
    out = compact(value)
    assert out == value
    keys = [next(iter(out)), *out["spec"], *out["spec"]["ports"][0], *out["spec"]["ports"][1][0]]
    assert all(k is sys.intern(k) for k in keys)


DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app.kubernetes.io/name: web, app.kubernetes.io/part-of: shop}
spec:
  replicas: 2
  selector:
    matchLabels: {app.kubernetes.io/name: web}
  template:
    metadata:
      labels: {app.kubernetes.io/name: web}
    spec:
      containers:
      - name: web
        image: nginx:1.27
        ports: [{containerPort: 8080, name: http}]
        env: [{name: A, value: '0'}, {name: B, value: b}]
"""


def test_loading_a_manifest_costs_few_python_calls_per_node() -> None:
    """The composer's per-node resolver hooks are C no-ops and string keys and values are
    taken inline: a Deployment costs under three Python calls per node (the tag lookup
    and PyYAML's node objects), not six (also a descend, an ascend and a build per node)."""
    load_all(DEPLOYMENT, "warm.yaml")  # tags remembered, as in a daemon that has rendered before
    nodes = 0

    def walk(value: Any) -> None:
        nonlocal nodes
        nodes += 1
        for item in value.items() if isinstance(value, dict) else value if isinstance(value, list) else ():
            for part in item if isinstance(item, tuple) else (item,):
                walk(part)

    [(_, doc)] = load_all(DEPLOYMENT, "d.yaml")
    walk(doc)
    with python_calls() as counted:
        load_all(DEPLOYMENT, "d.yaml")
    calls = sum(counted.values())
    assert calls <= 3 * nodes, (calls, nodes)


def test_the_depth_bound_walks_brackets_only_when_their_count_could_reach_the_limit() -> None:
    """Flow nesting is at most the number of opening brackets: a manifest with a few never walks them."""
    import gitopsd.core.yamlio as yamlio

    walked: list[str] = []

    class Brackets:
        def finditer(self, text: str) -> Any:
            walked.append(text)
            return yamlio.re.compile(r"[\[\]{}]").finditer(text)

    real = yamlio._BRACKETS
    yamlio._BRACKETS = Brackets()  # type: ignore[assignment]
    try:
        check_depth(DEPLOYMENT, "d.yaml", 100)
        assert walked == []
        many = "a: [" + ", ".join("[x]" for _ in range(150)) + "]\n"
        check_depth(many, "many.yaml", 100)  # 151 brackets, 2 deep: walked, and passes
        assert walked == [many]
    finally:
        yamlio._BRACKETS = real


def test_the_depth_bound_finds_no_leading_runs_in_ordinary_ascii_manifests() -> None:
    """For ASCII text one search of its shape shows that no line starts with a run long enough
    to reach the limit: the runs themselves (a string each) are listed only when one might."""
    import gitopsd.core.yamlio as yamlio

    listed: list[str] = []

    class Leading:
        def findall(self, text: str) -> Any:
            listed.append(text)
            return real.findall(text)

    real = yamlio._LEADING
    yamlio._LEADING = Leading()  # type: ignore[assignment]
    try:
        check_depth(DEPLOYMENT, "d.yaml", 100)
        load_all(DEPLOYMENT, "d.yaml")
        assert listed == []
        deep_ok = "a:\n" + "".join("  " * (i + 1) + f"k{i}:\n" for i in range(48)) + "  " * 49 + "v\n"
        check_depth(deep_ok, "ok.yaml", 100)  # a run of 98: the bound is 198, the real depth 50
        assert listed == [deep_ok]
        check_depth(DEPLOYMENT.replace("web", "wéb"), "d.yaml", 100)  # not ASCII: the runs are listed
        assert len(listed) == 2
    finally:
        yamlio._LEADING = real


def test_remembered_tags_are_answered_without_the_loader_s_method() -> None:
    """The composer asks every scalar's tag through ``self.resolve``: a plain function in the
    loader's dict answers the remembered ones, not a bound method made for each ask."""
    import gitopsd.core.yamlio as yamlio

    load_all(DEPLOYMENT, "warm.yaml")
    with python_calls() as counted:
        load_all(DEPLOYMENT, "d.yaml")
    assert counted[yamlio._Loader.resolve.__code__] == 0
    assert sum(n for code, n in counted.items() if code.co_name == "resolve") > 20  # one per scalar, and still asked


def test_remembered_scalars_are_built_once() -> None:
    """``replicas: 2``, ``containerPort: 8080``: an int (float, bool, null) of a short text is
    built by PyYAML's constructor once, then shared; every value is still PyYAML's."""
    import yaml

    words = ["2", "8080", "0x1F", "0o17", "1_000", "+12", "1.5", "1e3", ".inf", "-.inf", ".nan", "yes", "No", "off",
             "~", "null", "", "2001-12-14", "'3'"]
    text = "".join(f"k{i}: {w}\nl{i}: [{w or '~'}]\n" for i, w in enumerate(words))
    [(_, first)] = load_all(text, "first.yaml")
    with python_calls() as counted:
        [(_, second)] = load_all(text, "second.yaml")
    expected = yaml.safe_load(text)
    for doc in (first, second):
        assert repr(doc) == repr(expected)  # repr: nan is no nan's equal
    built = {code.co_name for code in counted if code.co_name.startswith("construct_yaml_")}
    assert built == {"construct_yaml_timestamp"}, built  # a date is not shared: only immutable numbers and constants
