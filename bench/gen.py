"""Generate the benchmark's git repository: N apps of M objects each, in ONE repository.

Layout (branch ``main``)::

    apps/app-0000/            plain YAML: namespace.yaml + one file per object
    apps/app-0008/            Kustomize (every 10th app, index % 10 == 8)
    apps/app-0009/            Helm chart (every 10th app, index % 10 == 9)

Each app lives in its own namespace ``app-NNNN``. Objects cycle through Deployment,
Service, ConfigMap (``deployment-0``, ``service-1``, ``configmap-2``, ...), so object 0
of every app is a Deployment (the drift target) and object 2 a ConfigMap (the push
target, key ``revision``).
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import yaml

KINDS = ("Deployment", "Service", "ConfigMap")


@dataclass(frozen=True)
class AppSpec:
    """One generated app."""

    name: str
    kind: str  # plain | kustomize | helm
    objects: int

    @property
    def namespace(self) -> str:
        """The app's namespace (same as its name)."""
        return self.name

    @property
    def path(self) -> str:
        """Directory of the app inside the repository."""
        return f"apps/{self.name}"


def app_specs(apps: int, objects: int) -> list[AppSpec]:
    """The N app specs: one Kustomize and one Helm app in every 10."""
    specs = []
    for i in range(apps):
        kind = "kustomize" if i % 10 == 8 else "helm" if i % 10 == 9 else "plain"
        specs.append(AppSpec(f"app-{i:04d}", kind, objects))
    return specs


def object_manifest(app: str, index: int, revision: str = "1", namespace: str | None = None) -> dict:
    """Object ``index`` of ``app`` (kind cycles Deployment, Service, ConfigMap)."""
    kind = KINDS[index % 3]
    name = f"{kind.lower()}-{index}"
    meta: dict = {"name": name, "labels": {"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": app}}
    if namespace:
        meta["namespace"] = namespace
    selector = {"app.kubernetes.io/name": f"deployment-{index - index % 3}"}
    if kind == "Deployment":
        return {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": meta,
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app.kubernetes.io/name": name}},
                "template": {
                    "metadata": {"labels": {"app.kubernetes.io/name": name}},
                    "spec": {
                        "containers": [
                            {
                                "name": "web",
                                "image": "nginx:1.27",
                                "ports": [{"containerPort": 8080, "name": "http"}],
                                "env": [{"name": "APP", "value": app}, {"name": "INDEX", "value": str(index)}],
                                "resources": {
                                    "requests": {"cpu": "50m", "memory": "64Mi"},
                                    "limits": {"memory": "128Mi"},
                                },
                            }
                        ]
                    },
                },
            },
        }
    if kind == "Service":
        return {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": meta,
            "spec": {"selector": selector, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
        }
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": meta,
        "data": {
            "revision": revision,
            "settings.yaml": f"app: {app}\nindex: {index}\nlog_level: info\nfeatures: [a, b, c]\n",
        },
    }


def _yaml(doc: dict) -> str:
    # libyaml's emitter: the pure-Python one made generating 10,000 apps take minutes.
    return yaml.dump(doc, Dumper=yaml.CSafeDumper, sort_keys=False)


def _dump(path: Path, doc: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(_yaml(doc))


def write_app(root: Path, spec: AppSpec, revisions: dict[int, str] | None = None) -> None:
    """Write (or rewrite) one app's files under ``root`` (the work tree)."""
    revisions = revisions or {}
    base = root / spec.path
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": spec.namespace}}
    if spec.kind == "plain":
        _dump(base / "00-namespace.yaml", ns)
        for i in range(spec.objects):
            doc = object_manifest(spec.name, i, revisions.get(i, "1"), namespace=spec.namespace)
            _dump(base / f"{i + 1:02d}-{doc['metadata']['name']}.yaml", doc)
    elif spec.kind == "kustomize":
        files = ["namespace.yaml"]
        _dump(base / "namespace.yaml", ns)
        for i in range(spec.objects):
            doc = object_manifest(spec.name, i, revisions.get(i, "1"))
            fname = f"{doc['metadata']['name']}.yaml"
            files.append(fname)
            _dump(base / fname, doc)
        _dump(
            base / "kustomization.yaml",
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "namespace": spec.namespace,
                "labels": [{"pairs": {"bench.gitopsd.dev/renderer": "kustomize"}}],
                "resources": files,
            },
        )
    else:
        _dump(base / "Chart.yaml", {"apiVersion": "v2", "name": spec.name, "version": "0.1.0", "type": "application"})
        _dump(base / "values.yaml", {"replicas": 2, "image": "nginx:1.27"})
        tpl = base / "templates"
        tpl.mkdir(parents=True, exist_ok=True)
        ns_tpl = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "{{ .Release.Namespace }}"}}
        (tpl / "namespace.yaml").write_text(_yaml(ns_tpl))
        for i in range(spec.objects):
            doc = object_manifest(spec.name, i, revisions.get(i, "1"))
            doc["metadata"]["namespace"] = "{{ .Release.Namespace }}"
            text = _yaml(doc)
            if doc["kind"] == "Deployment":
                text = text.replace("replicas: 2", "replicas: {{ .Values.replicas }}")
                text = text.replace("image: nginx:1.27", "image: {{ .Values.image | quote }}")
            (tpl / f"{doc['metadata']['name']}.yaml").write_text(text)


def git(cwd: Path, *args: str) -> str:
    """Run git in ``cwd`` with a fixed identity; return stdout."""
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "bench",
        "GIT_AUTHOR_EMAIL": "bench@example.invalid",
        "GIT_COMMITTER_NAME": "bench",
        "GIT_COMMITTER_EMAIL": "bench@example.invalid",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
    }
    out = subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True)
    return out.stdout.strip()


@dataclass
class Repo:
    """The generated repository: a bare ``origin`` (what everyone pulls) and a work tree that pushes."""

    bare: Path
    work: Path
    specs: list[AppSpec]

    @property
    def url(self) -> str:
        """The file:// URL of the bare repository."""
        return self.bare.resolve().as_uri()

    def commit_and_push(self, message: str) -> str:
        """Commit everything in the work tree, push to origin; return the new commit."""
        git(self.work, "add", "-A")
        git(self.work, "commit", "-q", "-m", message)
        git(self.work, "push", "-q", "origin", "main")
        return git(self.work, "rev-parse", "HEAD")

    def head(self) -> str:
        """The current commit of the work tree."""
        return git(self.work, "rev-parse", "HEAD")


def generate(root: Path, apps: int, objects: int) -> Repo:
    """Create ``root/origin.git`` (bare) and ``root/work`` with every app committed on ``main``."""
    root.mkdir(parents=True, exist_ok=True)
    bare, work = root / "origin.git", root / "work"
    git(root, "init", "-q", "--bare", "-b", "main", str(bare))
    git(root, "init", "-q", "-b", "main", str(work))
    git(work, "remote", "add", "origin", bare.resolve().as_uri())
    specs = app_specs(apps, objects)
    for spec in specs:
        write_app(work, spec)
    (work / "README.md").write_text(f"Benchmark repository: {apps} apps x {objects} objects.\n")
    repo = Repo(bare, work, specs)
    repo.commit_and_push(f"{apps} apps x {objects} objects")
    return repo


def generate_repos(root: Path, apps: int, objects: int, repos: int = 1) -> list[Repo]:
    """``repos`` repositories sharing the N apps in contiguous blocks (``root`` itself when there is one).

    App names stay global (``app-0000`` .. ``app-NNNN``), so every size keeps one namespace per app.
    """
    if repos <= 1:
        return [generate(root, apps, objects)]
    specs = app_specs(apps, objects)
    size = -(-apps // repos)
    out = []
    for k in range(repos):
        block = specs[k * size:(k + 1) * size]
        if not block:
            break
        sub = root / f"repo-{k:02d}"
        sub.mkdir(parents=True, exist_ok=True)
        bare, work = sub / "origin.git", sub / "work"
        git(sub, "init", "-q", "--bare", "-b", "main", str(bare))
        git(sub, "init", "-q", "-b", "main", str(work))
        git(work, "remote", "add", "origin", bare.resolve().as_uri())
        for spec in block:
            write_app(work, spec)
        (work / "README.md").write_text(f"Benchmark repository {k}: {len(block)} apps x {objects} objects.\n")
        repo = Repo(bare, work, block)
        repo.commit_and_push(f"{len(block)} apps x {objects} objects")
        out.append(repo)
    return out
