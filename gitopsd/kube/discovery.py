"""Discovery: which resource (plural, scope) serves a kind, per cluster, in memory.

Only the group-versions a render uses are fetched (``/api/v1``, ``/apis/GROUP/VERSION``),
once each, and fetched again when a kind is unknown (a CRD applied since). Nothing is
cached on disk, so two clusters (or two test servers on a reused port) never share entries.
Kinds defined by a CRD in the same render are known from that CRD before it exists.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gitopsd.core.models import Manifest
from gitopsd.engine.sharing import SingleFlight
from gitopsd.kube.client import ApiError, KubeClient


@dataclass(frozen=True, slots=True)
class Resource:
    """A served resource: where objects of one kind live."""

    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def collection_path(self, namespace: str = "") -> str:
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace:
            return f"{base}/namespaces/{namespace}/{self.plural}"
        return f"{base}/{self.plural}"

    def object_path(self, namespace: str, name: str) -> str:
        return f"{self.collection_path(namespace)}/{name}"


class UnknownKind(Exception):
    """No served resource has this kind (yet)."""


def resources_from_crd(crd: Manifest) -> list[Resource]:
    """The resources a CustomResourceDefinition manifest will serve."""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    group, kind, plural = spec.get("group"), names.get("kind"), names.get("plural")
    if not (group and kind and plural):
        return []
    namespaced = spec.get("scope", "Namespaced") == "Namespaced"
    return [
        Resource(str(group), str(v.get("name")), str(kind), str(plural), namespaced)
        for v in spec.get("versions") or []
        if v.get("served", True) and v.get("name")
    ]


def is_crd(obj: Manifest) -> bool:
    return obj.get("kind") == "CustomResourceDefinition" and str(
        obj.get("apiVersion", "")
    ).startswith("apiextensions.k8s.io/")


class Discovery:
    """Kind -> Resource for one cluster."""

    def __init__(self, client: KubeClient):
        self._client = client
        self._by_gv: dict[str, dict[str, Resource]] = {}
        self._fetches = SingleFlight()  # one request per API group version, shared by its askers

    def cached(self, api_version: str, kind: str) -> Resource | None:
        """From memory only (no request)."""
        return self._by_gv.get(api_version, {}).get(kind)

    async def resolve(
        self, api_version: str, kind: str, *, hints: dict[tuple[str, str], Resource] | None = None
    ) -> Resource:
        """The resource serving ``kind`` in ``api_version``; refresh once if unknown.

        ``hints`` (from CRDs in the same render) answer for kinds not served yet.
        Raises UnknownKind.
        """
        found = self.cached(api_version, kind)
        if found is not None:
            return found
        # Every app of a cold start asks at once: those that wait for the one request all
        # continue when it is answered (behind a lock, one per turn of the event loop).
        await self._fetches.do(api_version, lambda: self._fetch(api_version))
        found = self.cached(api_version, kind)
        if found is not None:
            return found
        if hints and (api_version, kind) in hints:
            return hints[(api_version, kind)]
        raise UnknownKind(
            f"no resource for kind {kind} in {api_version} on cluster {self._client.name}"
        )

    def forget(self, api_version: str) -> None:
        self._by_gv.pop(api_version, None)

    async def _fetch(self, api_version: str) -> None:
        group, _, version = api_version.rpartition("/")
        path = f"/apis/{group}/{version}" if group else f"/api/{version}"
        try:
            answer: dict[str, Any] = await self._client.request("GET", path)
        except ApiError as exc:
            if exc.status == 404:
                self._by_gv[api_version] = {}
                return
            raise
        kinds: dict[str, Resource] = {}
        for item in answer.get("resources") or []:
            name = str(item.get("name", ""))
            if not name or "/" in name:  # subresources (deployments/status, pods/log)
                continue
            kinds[str(item.get("kind"))] = Resource(
                group, version, str(item.get("kind")), name, bool(item.get("namespaced"))
            )
        self._by_gv[api_version] = kinds
