"""The quick YAML reader answers only where it reads exactly what PyYAML reads (gitopsd.core.yamlfast)."""

from __future__ import annotations

import random
from pathlib import Path

import orjson
import pytest
import yaml

from gitopsd.core import yamlfast, yamlio
from gitopsd.core.errors import RenderError

ROOT = Path(__file__).resolve().parents[2]

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app.kubernetes.io/name: web, tier: front}
  annotations:
    description: "serves the page: 2 replicas"
spec:
  replicas: 2
  template:
    spec:
      containers:
      - name: web
        image: nginx:1.27.1
        args: ["--port", "8080", '--x=1']
        ports:
        - containerPort: 8080
        env:
        - {name: RATIO, value: "0.5"}
        - name: TEXT
          value: |
            line one
              indented
        resources:
          limits: {cpu: 500m, memory: 128Mi}
        ready: true
        nothing: null
        weight: -1.25
"""

# A configuration file inside a ConfigMap, as a YAML dumper writes it: a quoted scalar over lines.
CONFIGMAP = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: web-settings
data:
  revision: '1'
  settings.yaml: 'app: web

    index: 2

    features: [a, b, c]

    '
"""

# Plain scalars YAML 1.1 (PyYAML, kubectl) and 1.2 (yaml-rs) read differently, or might.
DIVERGENT = [
    "0644", "010", "09", "00", "0o17", "0x1F", "0b101", "1_000", "1:20", "-1:20", "1e3", "1E+3",
    "1.5e3", "1.", ".5", "+.5", "-0.", ".inf", "-.inf", ".NaN", "2001-12-14", "2001-12-14T21:59:43Z",
    "yes", "Yes", "no", "NO", "on", "On", "off", "OFF", ".Inf", "+.INF", "-.nan", "<<", "=", "12345678901234567890",
    # yaml-rs reads underscores anywhere in a number: 1, -1, 1.5, 0.5, 0, 1000.0 for it, strings for PyYAML
    "_1", "-_1", "+_1", "_1.5", "_.5", "_0", "_1e3", "_1_000", "__1",
]
# Plain scalars both read alike although they look like the ones above: strings, or the same value.
ALIKE = ["y", "n", "Y", "N", "tRUE", "nULL", "nan", "inf", "yes-no", "on_off", "1Gi", "50m", "1.27-alpine", "v1.2",
         "10.0.0.1", "1.2.3", "0", "-7", "+12", "0.5", "-1.25", "true", "False", "NULL", "~", "---"]


def test_yaml_rs_is_installed() -> None:
    """A locked dependency: without it every test below would only see PyYAML's path."""
    assert yamlfast.yaml_rs is not None


def _same_as_pyyaml(text: str) -> None:
    quick = yamlfast.load_documents(text, 10**6)
    if quick is None:
        return
    reference = list(yaml.load_all(text, Loader=yaml.CSafeLoader))
    # Equal values, equal types (True is not 1 here), equal key order.
    assert repr(quick) == repr(reference), text
    assert orjson.dumps(quick, option=orjson.OPT_NON_STR_KEYS) == orjson.dumps(reference, option=orjson.OPT_NON_STR_KEYS)


def test_a_plain_manifest_is_read_quickly_and_alike() -> None:
    quick = yamlfast.load_documents(DEPLOYMENT, 10**6)
    assert quick is not None
    _same_as_pyyaml(DEPLOYMENT)
    assert quick[0]["spec"]["replicas"] == 2 and quick[0]["spec"]["template"]["spec"]["containers"][0]["ready"] is True


@pytest.mark.parametrize("scalar", DIVERGENT)
@pytest.mark.parametrize("place", ["value: {}\n", "{}: value\n", "- {}\n", "items: [a, {}]\n", "m: {{k: {}}}\n", '{{"k":{}}}\n'])
def test_a_scalar_the_schemas_may_read_apart_goes_to_pyyaml(scalar: str, place: str) -> None:
    text = place.format(scalar)
    assert yamlfast.load_documents(text, 10**6) is None, text
    _same_as_pyyaml(text)


@pytest.mark.parametrize("scalar", ALIKE)
@pytest.mark.parametrize("place", ["value: {}\n", "- {}\n", "items: [a, {}]\n", "a: x:{}\n", "a: x:0644\n"])
def test_a_scalar_both_read_alike_is_read_quickly(scalar: str, place: str) -> None:
    text = place.format(scalar)
    if scalar == "---" and place.startswith("- "):
        text = "a:\n" + text  # "- ---" is a document marker's look-alike only at the start
    assert yamlfast.load_documents(text, 10**6) is not None, text
    _same_as_pyyaml(text)


@pytest.mark.parametrize(
    "text",
    [
        "a: &x 1\nb: *x\n", "a: !!str 1\n", "%YAML 1.1\n---\na: 1\n", "a: 1\n...\n", "? a\n: 1\n",
        "a:\t1\n", "a: 1\r\nb: 2\r\n", "a: caf\u00e9\n", "[x]: 1\n", "{a: 1, [x]}\n", "a: {{ .Values.x }}\n",
        "{ {a: 1}: b }\n", "<<: {a: 1}\n", "a: [: x]\n", "k: : x\n", "a:\n  :\n  - 1\n", "a: |\n  x",
        # PyYAML reads an explicit key where yaml-rs reads a string starting with "?"
        "b: [?x, y]\n", "c: {?d: e}\n", "b: [x,?null y]\n",
    ],
)
def test_what_only_pyyaml_reads_goes_to_pyyaml(text: str) -> None:
    assert yamlfast.load_documents(text, 10**6) is None


# Texts PyYAML (and kubectl) refuse and yaml-rs reads: found by mutating real manifests.
REFUSED_BY_PYYAML = [
    "a: 1\nb: [x, y]\nc: {d:}\n",
    "patches:\n  - target: {kind: Deployment, name: :eb}\n",
    "names: {kind: Widget, plural: widgets,> singular: widget}\n",
    "labels:\n  - pairs: {a---\np.io/name: web}\n",
    "resources: [../../base,>extra.yaml]\n",
    "a: 1\nb: n[x\nc: {d: >e}\n",
    "|\ntrue| line\n  two\n",
    "a: 1\nb+: [x, y]\nc::  {d:,e}\n",
    "a: b: c\n",
    # Lines that do not nest as YAML nests them: the quick reader leaves nesting to yaml-rs, which
    # refuses these as PyYAML does; this test goes red the day a yaml-rs release reads one of them.
    "a:\n  b: 1\n c: 2\n", "- name: a\n image: b\n", "a: 1\n  b: 2\n", "a:\n    b: 1\n  c: 2\n", "- a\nb: 1\n",
    "a: 1\n- b\n", "a:\n  - b\n  c: 1\n",
]


@pytest.mark.parametrize("text", REFUSED_BY_PYYAML)
def test_what_pyyaml_refuses_the_quick_reader_refuses(text: str) -> None:
    with pytest.raises(yaml.YAMLError):
        list(yaml.load_all(text, Loader=yaml.CSafeLoader))
    assert yamlfast.load_documents(text, 10**6) is None, text


@pytest.mark.parametrize(
    "text",
    [
        "spec:\n  containers:\n  - name: a\n    ports:\n    - containerPort: 80\n  volumes: []\n",
        "- - a\n  - b\n- c\n", "a:\nb: 1\n", "a:\n- x\nb: y\n", "- name: a\n  image: b\n- name: c\n",
        "a: b # note\nc: # note\n  d: e\n", "# head\n---\na: 1\n--- # c\nb: [x, 'y,z', \"w\"]\n",
        "a: |\n  x\n\n  y\nb: >-\n  folded\n  text\n", "- |\n  x\n- y\n", "a:\n  - k: |\n      x\n    j: 1\n",
        "a: x[0]\nb: http://x/y?z=1\nc: 'it''s'\nd: \"e\\\"q\\n\"\n", "m: {k: v, 'q': \"w\"}\ns: []\nt: {}\n",
        CONFIGMAP, "a: \"x\n  y\"\n- \"b\n\n  c\"\n".replace("\n- ", "\nb:\n- "),
        "a: 'x' # c\nb: 'it''s # not a comment' # c\nc: it's #c\n", "  a: 1\n", "---\n  a: 1\n",
        "a: |  # c\n  x\n", "a: b # c: d, [e\n", "- - |\n    x\n  - 'y\n\n    z'\n",
    ],
)
def test_block_structures_both_read_alike_are_read_quickly(text: str) -> None:
    assert yamlfast.load_documents(text, 10**6) is not None, text
    _same_as_pyyaml(text)


@pytest.mark.parametrize(
    "text",
    [
        "a: b\n  c\n",  # a plain scalar over two lines
        "a: [x,\n  y]\n",  # a flow collection over two lines
        "a: [[x]]\n", "a: {k: [x]}\n",  # nested flow collections
        "a: 'x\ny'\n", "- 'x\ny'\n", "a: 'x\n  y' # c\n", "a: \"x\\\n  y\"\n", "a: 'x\n",  # quoted scalars over lines:
        # at the node's column, with a comment after them, an escaped line break, unclosed
        "hello\n",  # a document that is a scalar
        "a: |\n    x\n  y\n",  # less indented than the block scalar's first line
        "a: >\n  x\n    y\n  z\n",  # a folded scalar's more indented line
        "a: |\n",  "a: |\nb: 1\n",  # an empty block scalar
        "a: |+\n  x\n", "a: |2\n  x\n",  # kept final breaks, explicit indentation
        "a: |\n  x\n y\n", "- |\n  x\n y\n", "- - |\n    x\n   y\n",  # ... right of the node, left of the first line
        "- - 'x\n  y'\n",  # a quoted scalar's line at its node's column (the inner dash's)
        "a: \"\\u00e9\"\n",  # an escape other than \" \\ \/ \n \t
        "-  a: 1\n  b: 2\n",  # an item's mapping not where its first key is
    ],
)
def test_other_structures_go_to_pyyaml(text: str) -> None:
    assert yamlfast.load_documents(text, 10**6) is None, text


@pytest.mark.parametrize(
    ("text", "documents"),
    [
        ("", 0), ("# only a comment\n", 0), ("a: 1\n", 1), ("---\na: 1\n", 1), ("a: 1\n---\nb: 2\n", 2),
        ("---\n- a\n- b\n", 1), ("---\n- a\n---\n- b\n", 2), ("a: 1\n---\n", 2), ("---\n---\na: 1\n", 2),
        ("# c\n---\na: 1\n--- # c\nb: 2\n", 2), ("a: |\n  x\n---\nb: 1\n", 2),
    ],
)
def test_documents_are_counted_as_pyyaml_counts_them(text: str, documents: int) -> None:
    quick = yamlfast.load_documents(text, 10**6)
    assert quick is not None and len(quick) == documents
    _same_as_pyyaml(text)
    assert yamlio.load_all(text, "f.yaml") == [(i, d) for i, d in enumerate(yaml.load_all(text, Loader=yaml.CSafeLoader)) if d is not None]


def test_random_documents_read_alike_whenever_the_quick_reader_answers() -> None:
    """Documents built from scalars of every kind, in every style: where the quick reader answers
    (a fraction of them), its answer is PyYAML's exactly."""
    rng = random.Random(18)
    words = [
        *DIVERGENT,
        *ALIKE,
        "7", "65535", "", "web", "nginx:1.27", "128Mi", "a b", "x-1", "-", "--x", "#", "a#b", "a: b", "'q'", '"d"', "\\n",
        "x:010", "1:2", "1_0", "0x", "a,b", "[", "}", "?", ": x",
    ]
    quick_count = 0

    def scalar() -> str:
        word = rng.choice(words)
        style = rng.random()
        if style < 0.15:
            return "'" + word.replace("'", "''") + "'"
        if style < 0.3:
            return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'
        return word

    def node(depth: int, indent: str) -> str:
        shape = rng.random()
        if depth > 2 or shape < 0.4:
            return " " + scalar()
        if shape < 0.55:
            return " [" + ", ".join(scalar() for _ in range(rng.randint(0, 3))) + "]"
        if shape < 0.65:
            return " {" + ", ".join(f"k{i}: {scalar()}" for i in range(rng.randint(0, 3))) + "}"
        if shape < 0.75:
            return " |\n" + "".join(f"{indent}  {scalar()}\n" for _ in range(2)).rstrip("\n")
        if shape < 0.88:
            return "\n" + "\n".join(f"{indent}- {node(depth + 1, indent + '  ').lstrip()}" for _ in range(rng.randint(1, 3)))
        return "\n" + "\n".join(f"{indent}  {key(i)}:{node(depth + 1, indent + '  ')}" for i in range(rng.randint(1, 3)))

    def key(i: int) -> str:
        return scalar() if rng.random() < 0.2 else f"k{i}"

    for _ in range(3000):
        lines = [f"{key(i)}:{node(0, '')}" + (" # note" if rng.random() < 0.1 else "") for i in range(rng.randint(1, 4))]
        text = "\n".join(lines) + "\n"
        if rng.random() < 0.2:
            text = "---\n" + text + "---\n" + text
        if rng.random() < 0.2:
            text = text.rstrip("\n")  # a file without a line break at its end
        try:
            list(yaml.load_all(text, Loader=yaml.CSafeLoader))
        except yaml.YAMLError:
            # Not YAML for PyYAML: nor for the quick reader, so PyYAML's error is what the user sees.
            assert yamlfast.load_documents(text, 10**6) is None, text
            continue
        quick_count += yamlfast.load_documents(text, 10**6) is not None
        _same_as_pyyaml(text)
    assert quick_count > 300, quick_count  # the test must exercise the quick reader, not only its refusals


@pytest.mark.parametrize(
    "text",
    [
        "a: |\n    x\n  b: 1\n", "a:\n  b: |\n      x\n    c: 1\n",  # a node line between a block scalar's node and its lines
        "a: 'x\ny'\n", "- - 'x\n  y'\n",  # a quoted scalar's later line not right of its node
    ],
)
def test_lines_yaml_rs_refuses_today_are_refused_before_it_reads_them(text: str) -> None:
    """yaml-rs refuses these (PyYAML reads the quoted ones on); the quick reader does not count on it."""
    assert not yamlfast._block_structure(text)


def _manifests() -> list[str]:
    files = [p for pattern in ("examples/**/*.yaml", "tests/**/*.yaml", "docs/**/*.yaml") for p in ROOT.glob(pattern)]
    return [path.read_text(encoding="utf-8", errors="replace") for path in sorted(files)]


def test_mutated_manifests_read_alike_whenever_the_quick_reader_answers() -> None:
    """Real manifests with characters inserted, removed and replaced: broken YAML of every kind.
    Where PyYAML refuses one, so must the quick reader; where it answers, PyYAML's answer."""
    rng = random.Random(13)
    corpus = [text for text in (*_manifests(), DEPLOYMENT, CONFIGMAP) if text.isascii() and len(text) < 4000]
    pieces = [*" \n:-#'\"[]{},|>&*!%@?.0123456789abxyzeE+_/\\~=<", "\n  ", "  ", ": ", "- ", "---\n", "0x", "1e", "null", "yes", "_1"]
    quick_count = 0
    for _ in range(12000):
        text = rng.choice(corpus)
        for _ in range(rng.randint(1, 5)):
            at = rng.randrange(len(text) + 1)
            change = rng.random()
            if change < 0.4:
                text = text[:at] + rng.choice(pieces) + text[at:]
            elif change < 0.7:
                text = text[:at] + text[at + rng.randint(1, 4):]
            else:
                text = text[:at] + rng.choice(pieces) + text[at + 1:]
        quick = yamlfast.load_documents(text, 10**6)
        try:
            list(yaml.load_all(text, Loader=yaml.CSafeLoader))
        except yaml.YAMLError:
            assert quick is None, text
            continue
        if quick is not None:
            quick_count += 1
            _same_as_pyyaml(text)
    assert quick_count > 800, quick_count  # the mutations must reach the quick reader, not only its refusals


def test_every_manifest_of_the_repository_reads_alike() -> None:
    files = [p for pattern in ("examples/**/*.yaml", "tests/**/*.yaml", "docs/**/*.yaml") for p in ROOT.glob(pattern)]
    assert files
    for path in files:
        text = path.read_text(encoding="utf-8", errors="replace")
        try:
            list(yaml.load_all(text, Loader=yaml.CSafeLoader))
        except yaml.YAMLError:
            assert yamlfast.load_documents(text, 10**6) is None
            continue
        _same_as_pyyaml(text)


def test_bad_yaml_is_still_named_by_pyyaml() -> None:
    with pytest.raises(RenderError, match=r"f.yaml: document 0 line 2: invalid YAML"):
        yamlio.load_all("a: 1\n b: [\n", "f.yaml")


def test_without_yaml_rs_pyyaml_reads_everything(monkeypatch: pytest.MonkeyPatch) -> None:
    """A platform without yaml-rs's wheel (or a user who removed it) still reads every manifest."""
    monkeypatch.setattr(yamlfast, "yaml_rs", None)
    assert yamlfast.load_documents(DEPLOYMENT, 10**6) is None
    assert yamlio.load_all(DEPLOYMENT, "d.yaml") == [(0, yaml.load(DEPLOYMENT, Loader=yaml.CSafeLoader))]
