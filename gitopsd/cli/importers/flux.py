"""``gitopsd import flux``: Flux sources, Kustomizations and HelmReleases to gitopsd config.

Field names follow Flux's APIs: ``source.toolkit.fluxcd.io`` (GitRepository, OCIRepository,
HelmRepository), ``kustomize.toolkit.fluxcd.io/v1`` (Kustomization) and
``helm.toolkit.fluxcd.io/v2`` (HelmRelease). Sources become the ``source`` table of the
apps that use them; a source no app uses is listed as not translated.
"""

from __future__ import annotations

from typing import Any

from gitopsd.cli.importers.common import (
    IN_CLUSTER,
    Document,
    Entry,
    Translation,
    duration,
    unknown_keys,
)

SOURCE_KINDS = ("GitRepository", "OCIRepository", "HelmRepository", "Bucket", "HelmChart")


def translate(docs: list[Document]) -> Translation:
    out = Translation("flux")
    sources = {(d.kind, d.namespace or "flux-system", d.name): d for d in docs if d.kind in SOURCE_KINDS}
    used: set[tuple[str, str, str]] = set()
    names: dict[tuple[str, str, str], str] = {}  # (kind, namespace, name) of each Kustomization/HelmRelease -> app name
    pending: list[tuple[Entry, str, list[dict[str, Any]], str]] = []
    for doc in docs:
        group = str(doc.obj.get("apiVersion", "")).partition("/")[0]
        if doc.kind in SOURCE_KINDS and group == "source.toolkit.fluxcd.io":
            continue
        if doc.kind == "Kustomization" and group == "kustomize.toolkit.fluxcd.io":
            entry = _kustomization(out, doc, sources, used)
        elif doc.kind == "HelmRelease" and group == "helm.toolkit.fluxcd.io":
            entry = _helm_release(out, doc, sources, used)
        else:
            out.skipped.append(f"{doc.kind or 'document'} {doc.name!r} ({doc.where}): not a Flux resource gitopsd translates")
            continue
        if entry is None:
            continue
        namespace = doc.namespace or "flux-system"
        name = out.add(out.apps, doc.name, entry, f"{doc.kind} {namespace}/{doc.name} ({doc.where})", f"{doc.name}-{namespace}")
        names[(doc.kind, doc.namespace or "flux-system", doc.name)] = name
        pending.append((entry, doc.kind, list(doc.spec.get("dependsOn") or []), doc.namespace or "flux-system"))
    for entry, kind, depends, namespace in pending:
        resolved = []
        for dep in depends:
            key = (kind, str(dep.get("namespace") or namespace), str(dep.get("name", "")))
            if key in names:
                resolved.append(names[key])
            else:
                entry.drop(f"dependsOn {key[1]}/{key[2]}: not in the input")
        if resolved:
            entry.table["depends_on"] = resolved
    for key, doc in sources.items():
        if key not in used:
            out.skipped.append(f"{doc.kind} {key[1]}/{key[2]} ({doc.where}): no Kustomization or HelmRelease in the input uses it")
    return out


def _source_table(ref: dict[str, Any], namespace: str, sources: dict[tuple[str, str, str], Document],
                  used: set[tuple[str, str, str]], entry: Entry) -> dict[str, Any] | None:
    """The ``source`` table of the Flux source ``ref`` names (without ``path``)."""
    key = (str(ref.get("kind", "GitRepository")), str(ref.get("namespace") or namespace), str(ref.get("name", "")))
    doc = sources.get(key)
    if doc is None:
        entry.drop(f"sourceRef {key[0]} {key[1]}/{key[2]}: not in the input")
        return None
    used.add(key)
    spec = doc.spec
    if spec.get("secretRef"):
        entry.drop(f"{key[0]} {key[2]} credentials (Secret {spec['secretRef'].get('name')!r}): write them to files and set username_file/password_file or ssh_key_file")
    if spec.get("provider") not in (None, "generic"):
        entry.drop(f"{key[0]} {key[2]} spec.provider {spec['provider']!r}: cloud workload identity")
    if spec.get("type") not in (None, "default", "oci"):
        entry.drop(f"{key[0]} {key[2]} spec.type {spec['type']!r}")
    unknown_keys(spec, _SOURCE_KEYS, entry, f"{key[0]} {key[2]} spec")
    if spec.get("suspend"):
        entry.note(f"{key[0]} {key[2]} is suspended in Flux")
    if key[0] == "GitRepository":
        table: dict[str, Any] = {"type": "git", "url": spec.get("url", "")}
        ref_spec = spec.get("ref") or {}
        if ref_spec.get("commit"):
            table["ref"] = ref_spec["commit"]
        elif ref_spec.get("semver"):
            table["semver"] = ref_spec["semver"]
        elif ref_spec.get("tag"):
            table["ref"] = ref_spec["tag"]
        elif ref_spec.get("name"):
            table["ref"] = ref_spec["name"]
        elif ref_spec.get("branch"):
            table["ref"] = ref_spec["branch"]
        return table
    if key[0] == "OCIRepository":
        table = {"type": "oci", "url": spec.get("url", "")}
        ref_spec = spec.get("ref") or {}
        if ref_spec.get("digest"):
            table["digest"] = ref_spec["digest"]
        elif ref_spec.get("semver"):
            table["semver"] = ref_spec["semver"]
        elif ref_spec.get("tag"):
            table["tag"] = ref_spec["tag"]
        if spec.get("insecure"):
            table["insecure"] = True
        return table
    if key[0] == "HelmRepository":
        return {"type": "helm", "repo": spec.get("url", ""), **({"insecure": True} if spec.get("insecure") else {})}
    entry.drop(f"source kind {key[0]}")
    return None


def _common(out: Translation, doc: Document, entry: Entry) -> None:
    spec = doc.spec
    kube = spec.get("kubeConfig")
    if kube:
        secret = str((kube.get("secretRef") or {}).get("name", "remote"))
        entry.table["cluster"] = out.cluster(name=secret)
    else:
        entry.table["cluster"] = out.cluster(name=IN_CLUSTER)
    interval = duration(spec.get("interval"))
    if interval:
        entry.table["interval"] = interval
    timeout = duration(spec.get("timeout"))
    if timeout:
        entry.table["timeout"] = timeout
    if spec.get("suspend"):
        entry.table["suspended"] = True
    if spec.get("serviceAccountName"):
        entry.drop(f"serviceAccountName {spec['serviceAccountName']!r}: use a [policies.*] with impersonate_user")


def _kustomization(out: Translation, doc: Document, sources: dict[tuple[str, str, str], Document],
                   used: set[tuple[str, str, str]]) -> Entry | None:
    spec = doc.spec
    entry = Entry()
    namespace = doc.namespace or "flux-system"
    _common(out, doc, entry)
    source = _source_table(spec.get("sourceRef") or {}, namespace, sources, used, entry)
    if source is None:
        out.skipped.append(f"Kustomization {namespace}/{doc.name} ({doc.where}): " + "; ".join(entry.dropped))
        return None
    path = str(spec.get("path") or ".").removeprefix("./").strip("/") or "."
    if path != ".":
        source["path"] = path
    if spec.get("targetNamespace"):
        entry.table["namespace"] = spec["targetNamespace"]
        entry.note("targetNamespace: gitopsd sets the namespace on objects that have none (Flux overrides every object's)")
    entry.table["source"] = source
    entry.table["prune"] = bool(spec.get("prune", False))
    entry.table["self_heal"] = True
    entry.table["create_namespace"] = False
    if spec.get("force"):
        entry.table["replace_on_immutable"] = True
    decryption = spec.get("decryption")
    if decryption:
        entry.drop(f"decryption (provider {decryption.get('provider', 'sops')!r}): decrypt with a gitopsd post-render plugin or keep secrets out of git")
    if spec.get("wait") or spec.get("healthChecks"):
        entry.note("wait/healthChecks: gitopsd waits for every object of the app to be healthy (within timeout)")
    if spec.get("retryInterval"):
        entry.note("retryInterval: a failed sync is retried at the next poll (interval)")
    unknown_keys(spec, _KUSTOMIZATION_KEYS, entry)
    return entry


_COMMON_KEYS = {"interval", "timeout", "suspend", "kubeConfig", "dependsOn", "targetNamespace", "serviceAccountName"}
_KUSTOMIZATION_KEYS = _COMMON_KEYS | {"sourceRef", "path", "prune", "force", "decryption", "wait", "healthChecks", "retryInterval"}
_HELM_RELEASE_KEYS = _COMMON_KEYS | {"chart", "chartRef", "releaseName", "values", "valuesFrom", "install", "driftDetection"}
_SOURCE_KEYS = {"url", "ref", "interval", "timeout", "secretRef", "suspend", "insecure", "type", "provider"}


def _helm_release(out: Translation, doc: Document, sources: dict[tuple[str, str, str], Document],
                  used: set[tuple[str, str, str]]) -> Entry | None:
    spec = doc.spec
    entry = Entry()
    namespace = doc.namespace or "flux-system"
    _common(out, doc, entry)
    chart = ((spec.get("chart") or {}).get("spec")) or {}
    if spec.get("chartRef"):
        out.skipped.append(f"HelmRelease {namespace}/{doc.name} ({doc.where}): spec.chartRef (an OCIRepository or HelmChart holding the chart) is not translated")
        return None
    source = _source_table(chart.get("sourceRef") or {}, namespace, sources, used, entry)
    if source is None:
        out.skipped.append(f"HelmRelease {namespace}/{doc.name} ({doc.where}): " + "; ".join(entry.dropped))
        return None
    render: dict[str, Any] = {"type": "helm", "release_name": spec.get("releaseName") or doc.name}
    if source["type"] == "helm":
        source["chart"] = chart.get("chart", "")
        if chart.get("version"):
            source["version"] = chart["version"]
    else:  # a chart directory in a git repository or an OCI artifact
        path = str(chart.get("chart", ".")).removeprefix("./").strip("/") or "."
        if path != ".":
            source["path"] = path
    if chart.get("valuesFiles"):
        render["values_files"] = list(chart["valuesFiles"])
    if isinstance(spec.get("values"), dict) and spec["values"]:
        render["values"] = spec["values"]
    for ref in spec.get("valuesFrom") or []:
        entry.drop(f"valuesFrom {ref.get('kind', 'ConfigMap')} {ref.get('name')!r}: copy those values into render.values or a values file")
    entry.table["namespace"] = spec.get("targetNamespace") or namespace
    entry.table["source"] = source
    entry.table["render"] = render
    entry.table["prune"] = True  # helm removes what leaves the chart
    entry.table["create_namespace"] = bool((spec.get("install") or {}).get("createNamespace", False))
    drift = spec.get("driftDetection") or {}
    if drift.get("mode") not in (None, "disabled"):
        entry.note(f"driftDetection {drift['mode']}: gitopsd corrects drift itself (self_heal)")
    if drift.get("ignore"):
        entry.drop("driftDetection.ignore: fields gitopsd should leave alone are not translated")
    unknown_keys(chart, {"chart", "version", "sourceRef", "interval", "valuesFiles"}, entry, "chart.spec")
    unknown_keys(spec, _HELM_RELEASE_KEYS, entry)
    install = {k: v for k, v in (spec.get("install") or {}).items() if k != "createNamespace"}
    if install:
        entry.drop(f"spec.install {sorted(install)}")
    return entry
