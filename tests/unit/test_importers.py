"""Importer translation rules that need no git or cluster: placeholders, helm parameters, durations."""

from __future__ import annotations

from typing import Any

from gitopsd.cli.importers import argocd, flux
from gitopsd.cli.importers.common import Document, duration, set_dotted


def appset(template_name: str, generators: list[dict[str, Any]], **spec: Any) -> list[Document]:
    return [
        Document(
            "test.yaml, document 1",
            {
                "apiVersion": "argoproj.io/v1alpha1",
                "kind": "ApplicationSet",
                "metadata": {"name": "s"},
                "spec": {
                    "generators": generators,
                    "template": {
                        "metadata": {"name": template_name},
                        "spec": {
                            "source": {"repoURL": "https://g/r.git", "path": "{{path}}"},
                            "destination": {"name": "in-cluster"},
                            "syncPolicy": {"automated": {}},
                        },
                    },
                    **spec,
                },
            },
        )
    ]


GIT = {"git": {"repoURL": "https://g/r.git", "directories": [{"path": "apps/*"}]}}


def test_argo_placeholders_become_jinja2() -> None:
    out = argocd.translate(appset("{{path[1]}}-{{path.basenameNormalized}}-{{ .path.path }}", [GIT]))
    assert out.appsets["s"].table["template"]["name"] == "{{ path.segments[1] }}-{{ path.basename_normalized }}-{{ path }}"
    assert out.dropped == 0


def test_cluster_parameters_map_only_with_a_clusters_generator() -> None:
    listed = argocd.translate(appset("{{name}}", [{"list": {"elements": [{"name": "a"}]}}]))
    assert listed.appsets["s"].table["template"]["name"] == "{{ name }}"
    clusters = argocd.translate(appset("{{name}}-{{metadata.labels.env}}", [{"clusters": {}}]))
    assert clusters.appsets["s"].table["template"]["name"] == "{{ cluster.name }}-{{ cluster.labels.env }}"


def test_go_template_functions_are_not_translated() -> None:
    out = argocd.translate(appset("{{ .path.basename | lower }}", [GIT]))
    assert not out.appsets and out.dropped == 1
    assert "template expression {{ .path.basename | lower }}" in out.skipped[0]


def test_unknown_generators_and_keys_are_reported() -> None:
    out = argocd.translate(appset("{{path.basename}}", [GIT, {"pullRequest": {"github": {}}}], strategy={"type": "RollingSync"}))
    assert out.appsets["s"].dropped == ["generators[1].pullRequest generator", "spec.strategy"]


def test_helm_parameters_and_durations() -> None:
    values: dict[str, Any] = {}
    assert set_dotted(values, "a.b", 1) and set_dotted(values, "a.c", "x") and values == {"a": {"b": 1, "c": "x"}}
    assert not set_dotted(values, "list[0]", 1) and not set_dotted(values, "a.b.c", 1)
    assert [duration(v) for v in ("5m0s", "1h0m0s", "30s", "1h30m", "soon")] == ["5m", "1h", "30s", "1h30m", None]


def test_flux_source_refs_and_missing_sources() -> None:
    docs = [
        Document("f, document 1", {"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository",
                                   "metadata": {"name": "repo", "namespace": "flux-system"},
                                   "spec": {"url": "https://g/r", "ref": {"semver": ">=1.0.0"}, "secretRef": {"name": "creds"}}}),
        Document("f, document 2", {"apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
                                   "metadata": {"name": "a", "namespace": "flux-system"},
                                   "spec": {"sourceRef": {"kind": "GitRepository", "name": "repo"}, "path": "./x", "prune": True,
                                            "interval": "1m", "dependsOn": [{"name": "missing"}]}}),
        Document("f, document 3", {"apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
                                   "metadata": {"name": "b", "namespace": "flux-system"},
                                   "spec": {"sourceRef": {"kind": "GitRepository", "name": "nope"}, "prune": False, "interval": "1m"}}),
    ]
    out = flux.translate(docs)
    app = out.apps["a"]
    assert app.table["source"] == {"type": "git", "url": "https://g/r", "semver": ">=1.0.0", "path": "x"}
    assert any("credentials (Secret 'creds')" in d for d in app.dropped)
    assert "dependsOn flux-system/missing: not in the input" in app.dropped
    assert "b" not in out.apps and "sourceRef GitRepository flux-system/nope: not in the input" in out.skipped[0]
