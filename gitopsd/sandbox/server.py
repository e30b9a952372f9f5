"""The HTTP face of the sandbox: routing, bearer-token auth, faults, counters, watch streams."""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web

from . import protobuf, rbac
from .api import Api, Call
from .counters import Counters
from .faults import Faults
from .kinds import Registry, ResourceType
from .openapi import OpenApi
from .status import (
    ApiError,
    bad_request,
    method_not_allowed,
    not_found,
    status_failure,
    unauthorized,
    unsupported_media_type,
)
from .store import Event, Store, dumps
from .tables import table_version, to_table
from .workloads import log_text

log = logging.getLogger("gitopsd.sandbox")

VERSION = {
    "major": "1",
    "minor": "33",
    "gitVersion": "v1.33.0-gitopsd-sandbox",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2025-01-01T00:00:00Z",
    "goVersion": "go1.24.0",
    "compiler": "gc",
    "platform": "linux/amd64",
}
_PUBLIC = {"/version", "/healthz", "/readyz", "/livez"}
_NOT_FOUND = ApiError(404, "NotFound", "the server could not find the requested resource")
_POD_SUBRESOURCES = ("log", "portforward", "exec", "attach")
_MAX_BODY = 16 * 1024 * 1024
_WATCH_BUFFER = 64 * 1024
"""Bytes a watch connection may have unsent before its events wait for its task (flow control)."""


def flag(value: str | None) -> bool:
    """A boolean query parameter as Go's strconv.ParseBool reads it."""
    return (value or "") in ("1", "t", "T", "true", "TRUE", "True")


def _json(body: Any, code: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=dumps(body), status=code, content_type="application/json", headers=headers)


def _error(err: ApiError) -> web.Response:
    return _json(err.status(), err.code, err.headers)


class Route:
    """A parsed resource path."""

    def __init__(self, rt: ResourceType, namespace: str | None, name: str | None, sub: str, watch: bool) -> None:
        self.rt, self.namespace, self.name, self.sub, self.watch_path = rt, namespace, name, sub, watch


class SandboxState(Protocol):
    """What the HTTP layer reads and drives of a sandbox (:class:`~gitopsd.sandbox.Sandbox`)."""

    token: str
    api: Api
    registry: Registry
    store: Store
    faults: Faults
    counters_obj: Counters
    watch_timeout: float
    bookmark_interval: float
    openapi: OpenApi
    protos_dir: Path | None

    def counters(self) -> dict[str, Any]: ...

    def reset_counters(self) -> None: ...

    def set_faults(self, spec: Any) -> None: ...

    def stats(self) -> dict[str, Any]: ...


class SandboxServer:
    """aiohttp request handling for one sandbox (see :class:`SandboxState`)."""

    def __init__(self, sandbox: SandboxState) -> None:
        self.sb = sandbox
        self.authorizer = rbac.Authorizer(sandbox.store)

    def server(self) -> web.Server:
        """aiohttp's low-level server for :meth:`handle` (no router or middlewares: one handler
        takes every path, so the Application layer would be pure overhead on each request)."""
        loop = asyncio.get_running_loop()

        def request(message: Any, payload: Any, protocol: Any, writer: Any, task: Any) -> web.BaseRequest:
            return web.BaseRequest(message, payload, protocol, writer, task, loop, client_max_size=_MAX_BODY)

        return web.Server(self.handle, request_factory=request, access_log=None)

    # -- entry -----------------------------------------------------------------
    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        path = request.path.rstrip("/") or "/"
        if not self._authorized(request, path):
            if not path.startswith("/sandbox/"):
                self.sb.counters_obj.other()
            return _error(unauthorized())
        if path.startswith("/sandbox/"):
            return await self._admin(request, path)
        parts = [p for p in path.split("/") if p]
        if parts and parts[0] in ("api", "apis"):
            return await self._api(request, parts)
        self.sb.counters_obj.other()
        if parts and parts[0] == "openapi":
            return self._openapi(request, parts)
        if path in _PUBLIC or path.startswith(("/healthz/", "/readyz/", "/livez/")):
            if path == "/version":
                return _json(VERSION)
            return web.Response(text="ok", content_type="text/plain")
        return _error(_NOT_FOUND)

    def _authorized(self, request: web.BaseRequest, path: str) -> bool:
        header = request.headers.get("Authorization", "")
        if not header:
            return path in _PUBLIC or path.startswith(("/healthz/", "/readyz/", "/livez/"))
        scheme, _, token = header.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), self.sb.token.encode())

    def _openapi(self, request: web.BaseRequest, parts: list[str]) -> web.Response:
        """``/openapi/v2`` (JSON only) and ``/openapi/v3[/api/v1|/apis/<group>/<version>]``."""
        oa = self.sb.openapi
        if request.method != "GET":
            return _error(method_not_allowed())
        if parts == ["openapi", "v2"]:
            accept = request.headers.get("Accept", "")
            if accept and "json" not in accept and "*/*" not in accept:
                return _error(ApiError(406, "NotAcceptable",
                                       f"only the following media types are accepted: application/json (asked for {accept})"))
            body, digest = oa.v2()
            return web.Response(body=body, content_type="application/json", headers={"ETag": f'"{digest}"'})
        if parts == ["openapi", "v3"]:
            return web.Response(body=oa.v3_index(), content_type="application/json")
        reg = self.sb.registry
        gv: tuple[str, str] | None = None
        if len(parts) == 4 and parts[2] == "api" and reg.has_group_version("", parts[3]):
            gv = ("", parts[3])
        elif len(parts) == 5 and parts[2] == "apis" and reg.has_group_version(parts[3], parts[4]):
            gv = (parts[3], parts[4])
        if parts[:2] != ["openapi", "v3"] or gv is None:
            return _error(_NOT_FOUND)
        body, digest = oa.v3(*gv)
        headers = {"ETag": f'"{digest}"'}
        if request.query.get("hash") == digest:
            headers["Cache-Control"] = "public, immutable"
        return web.Response(body=body, content_type="application/json", headers=headers)

    # -- admin ------------------------------------------------------------------
    async def _admin(self, request: web.BaseRequest, path: str) -> web.Response:
        if path == "/sandbox/counters":
            if request.method == "GET":
                return _json(self.sb.counters())
            if request.method in ("DELETE", "POST"):
                self.sb.reset_counters()
                return _json({"status": "reset"})
        elif path == "/sandbox/faults":
            if request.method == "GET":
                return _json({"rules": self.sb.faults.raw, "injected": self.sb.faults.injected})
            if request.method in ("POST", "PUT"):
                text = await request.text()
                try:
                    self.sb.set_faults(json.loads(text) if text.strip() else None)
                except (ValueError, TypeError) as exc:
                    return _error(bad_request(f"invalid fault spec: {exc}"))
                return _json({"rules": self.sb.faults.raw})
        elif path == "/sandbox/stats":
            return _json(self.sb.stats())
        else:
            return _error(_NOT_FOUND)
        return _error(method_not_allowed())

    # -- API ------------------------------------------------------------------------
    def _discovery(self, parts: list[str]) -> dict[str, Any] | None:
        reg = self.sb.registry
        if parts == ["api"]:
            return reg.api_versions()
        if parts == ["api", "v1"]:
            return reg.resource_list("", "v1")
        if parts == ["apis"]:
            return reg.api_group_list()
        if len(parts) == 2 and parts[0] == "apis" and reg.versions(parts[1]):
            return reg.api_group(parts[1])
        if len(parts) == 3 and parts[0] == "apis" and reg.has_group_version(parts[1], parts[2]):
            return reg.resource_list(parts[1], parts[2])
        return None

    def _route(self, parts: list[str]) -> Route | None:
        if parts[0] == "api":
            group, version, rest = "", parts[1], parts[2:]
        else:
            group, version, rest = parts[1], parts[2], parts[3:]
        watch = False
        if rest and rest[0] == "watch":
            watch, rest = True, rest[1:]
        if not rest:
            return None
        reg = self.sb.registry
        ns: str | None = None
        if rest[0] == "namespaces" and len(rest) >= 3 and not (
            len(rest) == 3 and rest[2] in ("status", "finalize")
        ):
            ns, rest = rest[1], rest[2:]
        if len(rest) > 3:
            return None
        rt = reg.lookup(group, version, rest[0])
        if rt is None:
            return None
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else ""
        if ns is not None and not rt.namespaced:
            return None
        if rt.namespaced and ns is None and name is not None:
            return None
        if sub and not (
            (sub == "status" and rt.status) or (sub == "scale" and rt.scale)
            or (sub in _POD_SUBRESOURCES and rt.key == "pods")
            or (sub == "finalize" and rt.plural == "namespaces" and not rt.group)
        ):
            return None
        return Route(rt, ns, name, sub, watch)

    @staticmethod
    def _verb(method: str, route: Route, params: Any, ctype: str) -> str:
        if method == "GET":
            if route.watch_path or flag(params.get("watch")):
                return "watch"
            return "get" if route.name else "list"
        if method == "POST":
            return "create"
        if method == "PUT":
            return "update"
        if method == "PATCH":
            return "apply" if ctype.startswith("application/apply-patch") else "patch"
        if method == "DELETE":
            return "delete" if route.name else "deletecollection"
        return "unknown"

    async def _api(self, request: web.BaseRequest, parts: list[str]) -> web.StreamResponse:
        sb = self.sb
        if (parts[0] == "api" and len(parts) <= 2) or (parts[0] == "apis" and len(parts) <= 3):
            sb.counters_obj.discovery(request.path)
            if request.method != "GET":
                return _error(method_not_allowed())
            doc = self._discovery(parts)
            return _json(doc) if doc is not None else _error(_NOT_FOUND)
        try:
            who = rbac.identity(request.headers)  # the admin, or whom it impersonates
            review = rbac.review_route(parts)
            if review is not None:
                sb.counters_obj.other()
                if request.method != "POST":
                    return _error(method_not_allowed())
                code, out = rbac.review(
                    self.authorizer, who, *review, await request.read(), request.headers.get("Content-Type", "")
                )
                return _json(out, code)
        except ApiError as err:
            return _error(err)
        route = self._route(parts)
        if route is None:
            sb.counters_obj.other()
            return _error(_NOT_FOUND)
        if route.sub in _POD_SUBRESOURCES:
            return self._pod_subresource(request, route)
        params = request.query
        ctype = request.headers.get("Content-Type", "")
        verb = self._verb(request.method, route, params, ctype)
        resource = route.rt.key + (f"/{route.sub}" if route.sub else "")
        dry_run = params.get("dryRun") == "All"
        if verb == "unknown":
            sb.counters_obj.request(request.method.lower(), resource, 405, dry_run)
            return _error(method_not_allowed())
        code = 500
        try:
            decision = sb.faults.decide(verb, resource) if sb.faults.rules else None
            if decision is not None:
                if decision.latency:
                    await asyncio.sleep(decision.latency)
                if decision.stall:
                    await asyncio.sleep(decision.stall)
                    decision.drop = True
                if decision.drop:
                    code = 0
                    if request.transport is not None:
                        request.transport.abort()
                    raise ConnectionResetError("fault injection: dropped connection")
                if decision.code:
                    code = decision.code
                    return _error(_fault_error(decision.code, decision.retry_after, route))
            if who.impersonated:
                rbac.authorize(
                    self.authorizer, who, method=request.method, group=route.rt.group, resource=route.rt.plural,
                    subresource=route.sub, namespace=route.namespace or "", name=route.name or "",
                    watch=verb == "watch", apply=verb == "apply",
                    exists=lambda: sb.store.get(route.rt.key, route.namespace or "", route.name or "") is not None,
                )
            body = await request.read() if request.body_exists else b""
            if body and ctype.startswith(protobuf.MEDIA_TYPE):
                body, ctype = self._from_protobuf(body, route)
            elif body and ("protobuf" in ctype or "cbor" in ctype):
                raise unsupported_media_type(ctype)
            c = Call(route.rt, route.namespace, route.name, route.sub, dict(params), body, ctype,
                     request.headers.get("User-Agent", ""))
            if verb == "watch":
                code = 200
                return await self._watch(request, c)
            api = sb.api
            handler = {
                "get": api.get, "list": api.list_objects, "create": api.create, "update": api.update,
                "patch": api.patch, "apply": api.patch, "delete": api.delete,
                "deletecollection": api.delete_collection,
            }[verb]
            if route.sub == "finalize":
                handler = api.update
                c.subresource = ""
            code, out = handler(c)
            if verb in ("get", "list") and not route.sub:
                tv = table_version(request.headers.get("Accept", ""))
                if tv:
                    out = self._table(route.rt, out, tv, params)
            resp = self._reply(request, route.rt, out, code)
            for w in c.warnings:
                escaped = w.replace("\\", "\\\\").replace('"', '\\"')
                resp.headers.add("Warning", f'299 - "{escaped}"')
            return resp
        except ApiError as err:
            code = err.code
            return _error(err)
        except (ConnectionResetError, asyncio.CancelledError):
            raise
        except Exception as exc:
            log.exception("sandbox: internal error on %s %s", request.method, request.path)
            code = 500
            return _error(ApiError(500, "InternalError", f"Internal error occurred: {exc}"))
        finally:
            sb.counters_obj.request(verb, resource, code, dry_run)
            sb.counters_obj.write(request.headers.get("User-Agent", ""), verb, resource, route.namespace or "", route.name or "", code, dry_run)

    def _pod_subresource(self, request: web.BaseRequest, route: Route) -> web.Response:
        """``pods/log`` answers one fixed line per container; streams to containers are 501."""
        pod = self.sb.store.get("pods", route.namespace or "", route.name or "")
        resource = f"pods/{route.sub}"
        if pod is None:
            self.sb.counters_obj.request("get", resource, 404, False)
            return _error(not_found("pods", "", route.name or ""))
        if route.sub != "log":
            self.sb.counters_obj.request("create", resource, 501, False)
            return _error(ApiError(501, "NotImplemented",
                                   f"the gitopsd sandbox runs no containers: {route.sub} to pod "
                                   f"{route.namespace}/{route.name} is not supported"))
        container = request.query.get("container")
        text = log_text(pod, container)
        if text is None:
            self.sb.counters_obj.request("get", resource, 400, False)
            return _error(bad_request(f"container {container} is not valid for pod {route.name}"))
        self.sb.counters_obj.request("get", resource, 200, False)
        return web.Response(text=text, content_type="text/plain")

    # -- protobuf -------------------------------------------------------------------------
    def _codec(self) -> protobuf.Codec:
        return protobuf.codec(self.sb.protos_dir)

    def _from_protobuf(self, body: bytes, route: Route) -> tuple[bytes, str]:
        """A protobuf request body as the JSON the API verbs read."""
        try:
            obj = self._codec().decode(body)
        except protobuf.ProtobufUnavailable as exc:
            raise ApiError(415, "UnsupportedMediaType",
                           f"the sandbox cannot read {protobuf.MEDIA_TYPE} bodies: {exc}; send application/json") from None
        except Exception as exc:  # a malformed message: protobuf raises its own DecodeError
            raise bad_request(f"error decoding protobuf request body: {exc}") from None
        return dumps(obj), "application/json"

    def _reply(self, request: web.BaseRequest, rt: ResourceType, out: dict[str, Any], code: int) -> web.Response:
        """JSON, or protobuf when the client prefers it and the kind has a message."""
        accept = request.headers.get("Accept", "")
        if accept.startswith(protobuf.MEDIA_TYPE) and out.get("kind") in (rt.kind, f"{rt.kind}List") and not rt.crd:
            try:
                codec = self._codec()
                if codec.supports(out.get("apiVersion", rt.api_version), rt.kind):
                    return web.Response(body=codec.encode(out), status=code, content_type=protobuf.MEDIA_TYPE)
            except protobuf.ProtobufUnavailable:
                pass  # the client accepts JSON too (it always lists it)
        return web.Response(body=self._json_body(rt, out), status=code, content_type="application/json")

    def _json_body(self, rt: ResourceType, out: dict[str, Any]) -> bytes:
        """``out`` as JSON, with stored objects (alone or as list items) from the store's cache."""
        store = self.sb.store
        items = out.get("items")
        if isinstance(items, list) and out.get("kind") == f"{rt.kind}List":
            head = dumps({k: v for k, v in out.items() if k != "items"})
            return b"".join([head[:-1], b',"items":[', b",".join([store.json_of(rt.key, o) for o in items]), b"]}"])
        return store.json_of(rt.key, out)

    def _table(self, rt: ResourceType, body: dict[str, Any], version: str, params: Any) -> dict[str, Any]:
        columns = None
        if rt.crd:
            columns = (self.sb.registry.crd_version(rt) or {}).get("additionalPrinterColumns") or []
        return to_table(rt, body, version, params.get("includeObject") or "Metadata", columns)

    # -- watch --------------------------------------------------------------------------
    async def _watch(self, request: web.BaseRequest, c: Call) -> web.StreamResponse:
        sb = self.sb
        params = c.params
        if c.name:
            selector = f"metadata.name={c.name}"
            params["fieldSelector"] = ",".join(filter(None, [params.get("fieldSelector"), selector]))
        rv_text = params.get("resourceVersion") or ""
        initial = flag(params.get("sendInitialEvents"))
        try:
            since = None if rv_text in ("", "0") or initial else int(rv_text)
        except ValueError:
            raise bad_request(f"invalid resource version: {rv_text!r}") from None
        pred, _ = sb.api.predicate(c)
        bookmarks = flag(params.get("allowWatchBookmarks"))
        try:
            timeout = float(params.get("timeoutSeconds") or sb.watch_timeout)
        except ValueError:
            raise bad_request("invalid timeoutSeconds") from None
        rt = c.rt
        av = rt.api_version
        tv = table_version(request.headers.get("Accept", ""))

        def line(ev: Event) -> bytes:
            if tv is None:
                return ev.line(av)
            obj = ev.obj if ev.obj.get("apiVersion") == av else dict(ev.obj, apiVersion=av)
            table = self._table(rt, obj, tv, params)
            return b'{"type":"' + ev.type.encode() + b'","object":' + dumps(table) + b"}\n"
        resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        resp.enable_chunked_encoding()
        try:
            watcher, backlog = sb.store.watch(rt.key, c.namespace, pred, since)
        except ApiError as err:
            await resp.prepare(request)
            await resp.write(b'{"type":"ERROR","object":' + dumps(err.status()) + b"}\n")
            await resp.write_eof()
            return resp
        try:
            await resp.prepare(request)
            if backlog:
                await resp.write(b"".join(line(ev) for ev in backlog))
            if initial and bookmarks:
                await resp.write(self._bookmark(rt, {"k8s.io/initial-events-end": "true"}))
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            interval = sb.bookmark_interval
            last = loop.time()  # of the last write: a bookmark follows `interval` without one
            transport = request.transport

            def sink(events: list[Event]) -> bool:
                """Write events straight to the connection as one chunk (see :class:`Watcher`)."""
                nonlocal last
                if transport is None or transport.is_closing() or transport.get_write_buffer_size() > _WATCH_BUFFER:
                    return False
                data = b"".join([line(ev) for ev in events])
                transport.write(b"%x\r\n%b\r\n" % (len(data), data))  # the HTTP/1.1 chunk aiohttp would frame
                last = loop.time()
                return True

            while True:
                now = loop.time()
                if now >= deadline:
                    break
                if watcher.pending:
                    await resp.write(b"".join([line(ev) for ev in watcher.take()]))
                    last = loop.time()
                elif now >= last + interval:
                    if bookmarks:
                        await resp.write(self._bookmark(rt))
                    last = now
                else:
                    watcher.sink = sink
                    try:
                        await watcher.wait(min(deadline, last + interval))
                    finally:
                        watcher.sink = None
            await resp.write_eof()
        except (ConnectionResetError, ConnectionError):
            pass
        finally:
            sb.store.unwatch(watcher)
        return resp

    def _bookmark(self, rt: ResourceType, annotations: dict[str, str] | None = None) -> bytes:
        meta: dict[str, Any] = {"resourceVersion": str(self.sb.store.rv)}
        if annotations:
            meta["annotations"] = annotations
        obj = {"kind": rt.kind, "apiVersion": rt.api_version, "metadata": meta}
        return b'{"type":"BOOKMARK","object":' + dumps(obj) + b"}\n"


def _fault_error(code: int, retry_after: int, route: Route) -> ApiError:
    if code == 429:
        return ApiError(429, "TooManyRequests", "the server has received too many requests and has asked us to try again later (fault injection)",
                        {"retryAfterSeconds": retry_after}, {"Retry-After": str(retry_after)})
    if code == 503:
        return ApiError(503, "ServiceUnavailable", "the server is currently unable to handle the request (fault injection)",
                        headers={"Retry-After": str(retry_after)})
    if code == 409:
        return ApiError(409, "Conflict", f'Operation cannot be fulfilled on {route.rt.key} "{route.name or ""}": the object has been modified; please apply your changes to the latest version and try again (fault injection)',
                        {"name": route.name or "", "group": route.rt.group, "kind": route.rt.plural})
    if code == 504:
        return ApiError(504, "Timeout", "the server was unable to return a response in the time allotted (fault injection)")
    return ApiError(code, "InternalError", "Internal error occurred: fault injection")


__all__ = ["SandboxServer", "status_failure"]
