"""``gitopsd import argocd``: Applications, ApplicationSets and AppProjects to gitopsd config.

Field names follow Argo CD's ``argoproj.io/v1alpha1`` types (``ApplicationSpec``,
``ApplicationSource``, ``SyncPolicy``, ``ApplicationSetSpec``, ``AppProjectSpec``).
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from gitopsd.cli.importers.common import (
    Document,
    Entry,
    Translation,
    helm_value,
    set_dotted,
    slug,
    unknown_keys,
)

ARGO_FINALIZER = "resources-finalizer.argocd.argoproj.io"
_EQUIVALENT_SYNC_OPTIONS = {
    "ServerSideApply=true": "gitopsd always applies server-side",
    "ApplyOutOfSyncOnly=true": "gitopsd sends only objects that differ",
    "CreateNamespace=true": "",
}


def translate(docs: list[Document]) -> Translation:
    out = Translation("argocd")
    projects = {d.name for d in docs if d.kind == "AppProject"}
    for doc in docs:
        api = str(doc.obj.get("apiVersion", ""))
        if not api.startswith("argoproj.io/"):
            out.skipped.append(f"{doc.kind or 'document'} {doc.name!r} ({doc.where}): not an Argo CD resource")
            continue
        if doc.kind == "Application":
            _application(out, doc, projects)
        elif doc.kind == "ApplicationSet":
            _application_set(out, doc, projects)
        elif doc.kind == "AppProject":
            _project(out, doc)
        else:
            out.skipped.append(f"{doc.kind} {doc.name!r} ({doc.where}): kind not supported")
    return out


# -- Application -------------------------------------------------------------------------


def _app_table(
    out: Translation, spec: dict[str, Any], entry: Entry, projects: set[str], metadata: dict[str, Any],
    *, templated: bool = False, cluster_params: dict[str, str] | None = None,
) -> bool:
    """Fill ``entry`` from an ApplicationSpec; False when the app cannot be expressed at all."""
    table = entry.table
    if spec.get("sources"):
        entry.drop(f"multi-source app ({len(spec['sources'])} sources): gitopsd apps have one source; split it into one app per source")
        return False
    source = spec.get("source") or {}
    if not isinstance(source, dict) or not source.get("repoURL"):
        entry.drop("no spec.source.repoURL")
        return False
    if source.get("plugin") is not None:
        name = (source.get("plugin") or {}).get("name", "")
        entry.drop(f"config management plugin source{f' {name!r}' if name else ''}: write a gitopsd renderer plugin instead")
        return False
    destination = spec.get("destination") or {}
    table["cluster"] = _destination(out, destination, entry, templated, cluster_params or {})
    namespace = destination.get("namespace")
    if namespace:
        table["namespace"] = _template(str(namespace), cluster_params) if templated else namespace
    src, render = _source(source, entry, templated, cluster_params)
    table["source"] = src
    if render is not None:
        table["render"] = render
    _sync_policy(spec.get("syncPolicy") or {}, table, entry)
    if ARGO_FINALIZER in (metadata.get("finalizers") or []) or any(
        str(f).startswith(ARGO_FINALIZER) for f in metadata.get("finalizers") or []
    ):
        table["prune_on_remove"] = True
    project = spec.get("project") or "default"
    if project in projects:
        table["policy"] = slug(_template(str(project), cluster_params) if templated else project)
    elif project != "default":
        entry.note(f"project {project!r} is not in the input: its restrictions are not carried over")
    unknown_keys(spec, {"source", "sources", "destination", "project", "syncPolicy"}, entry)
    unknown_keys(source, {"repoURL", "path", "targetRevision", "chart", "helm", "kustomize", "directory", "plugin"}, entry, "source")
    unknown_keys(spec.get("syncPolicy") or {}, {"automated", "syncOptions", "retry", "managedNamespaceMetadata"}, entry, "syncPolicy")
    return True


def _destination(out: Translation, destination: dict[str, Any], entry: Entry, templated: bool, params: dict[str, str]) -> str:
    server, name = str(destination.get("server") or ""), str(destination.get("name") or "")
    value = name or server
    if templated and "{{" in value:
        return _template(value, params)
    return out.cluster(server=server, name=name)


def _source(source: dict[str, Any], entry: Entry, templated: bool, params: dict[str, str] | None) -> tuple[dict[str, Any], dict[str, Any] | None]:
    def t(value: Any) -> Any:
        return _template(value, params) if templated and isinstance(value, str) else value

    url = str(source["repoURL"])
    revision = source.get("targetRevision")
    render: dict[str, Any] | None = None
    if source.get("chart"):
        repo = url if "://" in url else f"oci://{url}"
        src: dict[str, Any] = {"type": "helm", "repo": t(repo), "chart": t(source["chart"])}
        if revision and revision not in ("*", "HEAD"):
            src["version"] = t(revision)
        render = {"type": "helm"}
    else:
        src = {"type": "git", "url": t(url)}
        if revision and revision != "HEAD":
            src["ref"] = t(revision)
        if source.get("path") and source.get("path") != ".":
            src["path"] = t(source["path"])
    helm = source.get("helm")
    if isinstance(helm, dict):
        render = {"type": "helm", **(render or {})}
        render.update(_helm(helm, entry, t))
    kustomize = source.get("kustomize")
    if isinstance(kustomize, dict):
        render = {"type": "kustomize"}
        for key, value in kustomize.items():
            if value in (None, "", [], {}):
                continue
            entry.drop(f"source.kustomize.{key} ({_short(value)}): put it in the kustomization.yaml")
    directory = source.get("directory")
    if isinstance(directory, dict):
        render = {"type": "plain", "recursive": bool(directory.get("recurse", False))}
        if directory.get("exclude"):
            render["exclude"] = [p.strip() for p in str(directory["exclude"]).strip("{}").split(",") if p.strip()]
        for key in ("include", "jsonnet"):
            if directory.get(key):
                entry.drop(f"source.directory.{key}")
    if render is not None and render.get("type") == "helm" and list(render) == ["type"] and source.get("chart"):
        render = None  # a chart source is rendered by helm anyway
    return src, render


def _helm(helm: dict[str, Any], entry: Entry, t: Any) -> dict[str, Any]:
    result: dict[str, Any] = {}
    if helm.get("releaseName"):
        result["release_name"] = t(helm["releaseName"])
    if helm.get("valueFiles"):
        result["values_files"] = [t(v) for v in helm["valueFiles"]]
    values: dict[str, Any] = {}
    if helm.get("values"):
        try:
            parsed = yaml.safe_load(str(helm["values"])) if isinstance(helm["values"], str) else helm["values"]
        except yaml.YAMLError:
            parsed = None
        if isinstance(parsed, dict):
            values.update(parsed)
        else:
            entry.drop("source.helm.values: not a YAML mapping")
    if isinstance(helm.get("valuesObject"), dict):
        _merge(values, helm["valuesObject"])
    for param in helm.get("parameters") or []:
        name, value = str(param.get("name", "")), param.get("value", "")
        if not set_dotted(values, name, helm_value(value, bool(param.get("forceString")))):
            entry.drop(f"source.helm.parameters {name}={_short(value)}: list indexes and escapes are not expressible as values")
    if values:
        result["values"] = values
    for key in ("fileParameters", "passCredentials", "ignoreMissingValueFiles", "skipCrds", "version", "apiVersions", "kubeVersion", "namespace"):
        if helm.get(key):
            if key == "skipCrds":
                result["include_crds"] = False
            elif key == "kubeVersion":
                result["kube_version"] = t(helm[key])
            elif key == "apiVersions":
                result["api_versions"] = list(helm[key])
            else:
                entry.drop(f"source.helm.{key}")
    return result


def _merge(into: dict[str, Any], new: dict[str, Any]) -> None:
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


def _sync_policy(policy: dict[str, Any], table: dict[str, Any], entry: Entry) -> None:
    automated = policy.get("automated")
    if automated is None:
        table["suspended"] = True
        entry.note("Argo CD syncs this app only by hand (no syncPolicy.automated): suspended; `gitopsd resume APP` starts it")
        automated = {}
    enabled = automated.get("enabled", True) if isinstance(automated, dict) else True
    if enabled is False:
        table["suspended"] = True
    table["prune"] = bool(automated.get("prune", False))
    table["self_heal"] = bool(automated.get("selfHeal", False))
    if automated.get("allowEmpty"):
        table["allow_empty"] = True
    options = [str(o) for o in policy.get("syncOptions") or []]
    table["create_namespace"] = "CreateNamespace=true" in options
    for option in options:
        if option in _EQUIVALENT_SYNC_OPTIONS:
            continue
        if option == "ServerSideApply=false":
            entry.note("syncOptions ServerSideApply=false: gitopsd always applies server-side")
        elif option in ("Replace=true",):
            entry.drop("syncOptions Replace=true (replace_on_immutable recreates only objects whose immutable fields changed)")
        else:
            entry.drop(f"syncOptions {option}")
    if policy.get("managedNamespaceMetadata"):
        entry.drop("syncPolicy.managedNamespaceMetadata")
    if policy.get("retry"):
        entry.drop("syncPolicy.retry (gitopsd retries at every poll)")


def _application(out: Translation, doc: Document, projects: set[str]) -> None:
    entry = Entry()
    metadata = doc.obj.get("metadata") or {}
    if _app_table(out, doc.spec, entry, projects, metadata):
        out.add(out.apps, doc.name, entry, f"Application {doc.name} ({doc.where})")
    else:
        out.skipped.append(f"Application {doc.name!r} ({doc.where}): " + "; ".join(entry.dropped))


# -- ApplicationSet ----------------------------------------------------------------------

_PLACEHOLDER = re.compile(r"\{\{-?\s*(.*?)\s*-?\}\}")
_SIMPLE = re.compile(r"^\.?([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*|\[\d+\])*)$")


def _template(value: Any, params: dict[str, str] | None) -> Any:
    """Argo CD placeholders (``{{path.basename}}``, ``{{.name}}``) as gitopsd's Jinja2 ones."""
    if not isinstance(value, str):
        return value
    params = params or {}

    def one(match: re.Match[str]) -> str:
        m = _SIMPLE.match(match.group(1))
        if m is None:
            raise _Untranslatable(match.group(0))
        name = m.group(1)
        name = re.sub(r"^path\[(\d+)\]", r"path.segments[\1]", name)
        name = "path" if name == "path.path" else name  # goTemplate spelling of the whole path
        name = name.replace("basenameNormalized", "basename_normalized").replace("filenameNormalized", "filename")
        for argo, ours in params.items():
            if name == argo or name.startswith(argo + "."):
                name = ours + name[len(argo):]
                break
        return "{{ " + name + " }}"

    return _PLACEHOLDER.sub(one, value)


class _Untranslatable(Exception):
    pass


def _generator(gen: dict[str, Any], entry: Entry, where: str, params: dict[str, str]) -> dict[str, Any] | None:
    (kind, body), *rest = list(gen.items()) or [("", None)]
    body = body or {}
    if gen.get("selector"):
        entry.drop(f"{where}.selector (post-selector on generated parameters)")
    if kind == "list":
        if body.get("elementsYaml"):
            entry.drop(f"{where}.list.elementsYaml")
        return {"type": "list", "elements": list(body.get("elements") or [])}
    if kind == "clusters":
        params.update({"name": "cluster.name", "server": "cluster.name", "nameNormalized": "cluster.name", "metadata.labels": "cluster.labels", "values": "values"})
        result: dict[str, Any] = {"type": "clusters"}
        selector = body.get("selector") or {}
        labels = {str(k): str(v) for k, v in (selector.get("matchLabels") or {}).items()}
        labels.pop("argocd.argoproj.io/secret-type", None)  # every Argo CD cluster has it
        if labels:
            result["selector"] = labels
        if selector.get("matchExpressions"):
            entry.drop(f"{where}.clusters.selector.matchExpressions: only matchLabels has an equivalent")
        if body.get("values"):
            result["values"] = {str(k): str(v) for k, v in body["values"].items()}
        entry.note("the clusters generator selects [clusters.*] tables by their `labels`: add them to the cluster stubs")
        return result
    if kind == "git":
        base: dict[str, Any] = {"url": body.get("repoURL", "")}
        if body.get("revision") and body["revision"] != "HEAD":
            base["ref"] = body["revision"]
        if body.get("directories"):
            include = [d["path"] for d in body["directories"] if not d.get("exclude")]
            exclude = [d["path"] for d in body["directories"] if d.get("exclude")]
            result = {"type": "git-directories", **base, "directories": include}
            if exclude:
                result["exclude"] = exclude
            return result
        if body.get("files"):
            if any(f.get("exclude") for f in body["files"]):
                entry.drop(f"{where}.git.files exclude")
            return {"type": "git-files", **base, "files": [f["path"] for f in body["files"] if not f.get("exclude")]}
        entry.drop(f"{where}.git: neither directories nor files")
        return None
    if kind == "matrix":
        children = [_generator(g, entry, f"{where}.matrix.generators[{i}]", params) for i, g in enumerate(body.get("generators") or [])]
        if len(children) != 2 or None in children:
            entry.drop(f"{where}.matrix: needs two translatable generators")
            return None
        return {"type": "matrix", "generators": children}
    entry.drop(f"{where}.{kind} generator" + (" (and more keys)" if rest else ""))
    return None


def _application_set(out: Translation, doc: Document, projects: set[str]) -> None:
    spec = doc.spec
    entry = Entry()
    params: dict[str, str] = {}
    translated = [_generator(g, entry, f"generators[{i}]", params) for i, g in enumerate(spec.get("generators") or [])]
    generators = [g for g in translated if g is not None]
    template = spec.get("template") or {}
    unknown_keys(spec, {"generators", "template", "goTemplate", "goTemplateOptions"}, entry)
    app = Entry()
    try:
        name = _template((template.get("metadata") or {}).get("name", ""), params)
        ok = _app_table(out, template.get("spec") or {}, app, projects, template.get("metadata") or {}, templated=True, cluster_params=params)
    except _Untranslatable as exc:
        out.skipped.append(f"ApplicationSet {doc.name!r} ({doc.where}): template expression {exc} (only plain parameters are translated)")
        return
    if ok:
        _list_destinations(out, app, generators)
    entry.dropped += [f"template: {d}" for d in app.dropped]
    entry.notes += [f"template: {n}" for n in app.notes]
    if not ok or not generators or not name:
        why = "; ".join(entry.dropped) or "no translatable generator or template name"
        out.skipped.append(f"ApplicationSet {doc.name!r} ({doc.where}): {why}")
        return
    prune_on_remove = app.table.pop("prune_on_remove", False)
    entry.table = {"generators": generators}
    if prune_on_remove:
        entry.table["prune_on_remove"] = True
    entry.table["template"] = {"name": name, **app.table}
    out.add(out.appsets, doc.name, entry, f"ApplicationSet {doc.name} ({doc.where})")


def _list_destinations(out: Translation, app: Entry, generators: list[dict[str, Any]]) -> None:
    """``destination.server: '{{url}}'`` with a list generator: its URLs become cluster names."""
    m = re.fullmatch(r"\{\{ (\w+) \}\}", str(app.table.get("cluster", "")))
    if m is None:
        return
    key = m.group(1)

    def walk(gens: list[dict[str, Any]]) -> None:
        for gen in gens:
            if gen["type"] == "matrix":
                walk(gen["generators"])
            elif gen["type"] == "list":
                for element in gen["elements"]:
                    value = element.get(key)
                    if isinstance(value, str) and value:
                        element[key] = out.cluster(server=value) if "://" in value else out.cluster(name=value)
                        app.note(f"list elements' {key!r} (the destination) rewritten as [clusters.*] names")

    walk(generators)
    app.notes[:] = list(dict.fromkeys(app.notes))


# -- AppProject --------------------------------------------------------------------------


def _kinds(items: list[dict[str, Any]], entry: Entry, where: str) -> list[str]:
    kinds = []
    for item in items or []:
        group, kind = str(item.get("group", "")), str(item.get("kind", ""))
        if kind == "*" or not kind[:1].isupper():
            entry.drop(f"{where} {group or 'core'}/{kind}: wildcards are not expressible")
            continue
        kinds.append(kind if group in ("", "*") else f"{group}/{kind}")
    return kinds


def _project(out: Translation, doc: Document) -> None:
    spec = doc.spec
    entry = Entry()
    namespaces = sorted({str(d.get("namespace") or "") for d in spec.get("destinations") or []} - {""})
    table: dict[str, Any] = {"namespaces": namespaces}
    cluster_kinds = _kinds(spec.get("clusterResourceWhitelist") or [], entry, "clusterResourceWhitelist")
    if cluster_kinds:
        table["cluster_kinds"] = cluster_kinds
    deny = _kinds(spec.get("clusterResourceBlacklist") or [], entry, "clusterResourceBlacklist")
    deny += _kinds(spec.get("namespaceResourceBlacklist") or [], entry, "namespaceResourceBlacklist")
    if deny:
        table["deny_kinds"] = deny
    allow_namespaced = spec.get("namespaceResourceWhitelist")
    if allow_namespaced and allow_namespaced != [{"group": "*", "kind": "*"}]:
        entry.drop("namespaceResourceWhitelist: policies allow every namespaced kind not denied")
    accounts = spec.get("destinationServiceAccounts") or []
    if accounts:
        first = accounts[0]
        account = str(first.get("defaultServiceAccount", ""))
        ns = str(first.get("namespace") or "default")
        if ":" not in account:
            account = f"system:serviceaccount:{ns}:{account}"
        table["impersonate_user"] = account
        if len(accounts) > 1:
            entry.drop("destinationServiceAccounts beyond the first (one user per policy)")
    if spec.get("sourceRepos") and spec["sourceRepos"] != ["*"]:
        entry.drop(f"sourceRepos {spec['sourceRepos']}: gitopsd does not restrict source URLs")
    if any(d.get("server") not in (None, "*") or d.get("name") not in (None, "*") for d in spec.get("destinations") or []):
        entry.note("destinations' clusters are not restricted by a policy: the apps name their cluster")
    known = {"description", "destinations", "clusterResourceWhitelist", "clusterResourceBlacklist",
             "namespaceResourceBlacklist", "namespaceResourceWhitelist", "destinationServiceAccounts", "sourceRepos"}
    unknown_keys(spec, known, entry)
    entry.table = table
    out.add(out.policies, doc.name, entry, f"AppProject {doc.name} ({doc.where})")


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 60 else text[:57] + "..."
