"""The etcd v3 backend, over etcd's JSON gateway (``/v3/...``, etcd 3.4+) with httpx.

Why the gateway and httpx rather than a client library: httpx is already a dependency and
fully asyncio; the gateway is part of every etcd server since 3.4 and needs nothing
compiled; python-etcd3 is synchronous (grpc) and unmaintained, and aetcd, the asyncio
fork, pulls in grpcio. The few calls needed here (lease grant/keepalive/revoke, put,
range, txn, watch) are plain JSON.

Keys, under ``prefix`` (default ``/gitopsd``):

- ``<prefix>/members/<member>``: ``{"advertise_url", "weight"}``, bound to the member's lease;
- ``<prefix>/locks/<lock>``: the holder's member name, bound to the holder's lease, created
  only if absent (a transaction comparing the key's create revision with 0).

When a lease expires or is revoked, etcd deletes every key bound to it: the member leaves
the list and its locks are free, atomically. Endpoints are tried in turn: a dead or
partitioned etcd node costs one failed request, not the lease.
"""

from __future__ import annotations

import base64
import json
import math
import time
from pathlib import Path
from typing import Any

import anyio
import httpx

from gitopsd.coord.base import CoordinationUnavailable, LeaseLost, MemberInfo
from gitopsd.core.version import user_agent


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _unb64(text: str) -> str:
    return base64.b64decode(text).decode()


def _prefix_end(prefix: str) -> str:
    """The range end that covers every key starting with ``prefix`` (its last byte plus one)."""
    raw = prefix.encode()
    return base64.b64encode(raw[:-1] + bytes([raw[-1] + 1])).decode()


class EtcdBackend:
    """:class:`gitopsd.coord.base.Backend` on etcd v3.

    Args:
        endpoints: Client URLs (``http(s)://host:2379``).
        member: This member's name.
        ttl: Lease TTL in seconds (etcd rounds up to whole seconds).
        advertise_url: This member's API URL.
        weight: Its share of the apps in shard mode.
        prefix: Key prefix of this installation.
        ca_file, cert_file, key_file: TLS settings (server CA; client certificate and key).
        username, password_file: etcd authentication.
    """

    kind = "etcd"

    def __init__(
        self,
        endpoints: list[str],
        member: str,
        ttl: float,
        *,
        advertise_url: str = "",
        weight: float = 1.0,
        prefix: str = "/gitopsd",
        ca_file: Path | None = None,
        cert_file: Path | None = None,
        key_file: Path | None = None,
        username: str | None = None,
        password_file: Path | None = None,
    ):
        if not endpoints:
            raise ValueError("etcd backend needs at least one endpoint")
        self.endpoints = [e.rstrip("/") for e in endpoints]
        self.member = member
        self.ttl = ttl
        self.advertise_url = advertise_url
        self.weight = weight
        self.prefix = prefix.rstrip("/")
        self._current = 0
        self._username = username
        self._password_file = password_file
        self._token: str | None = None
        self._lease: str | None = None
        self._valid_until = 0.0
        self._revision = 0
        # A request must fail well within the TTL, so the next endpoint still has time.
        self._timeout = max(0.5, min(5.0, ttl / 4))
        verify: Any = str(ca_file) if ca_file else True
        cert = (str(cert_file), str(key_file)) if cert_file and key_file else None
        self._http = httpx.AsyncClient(
            verify=verify, cert=cert, timeout=self._timeout, headers={"User-Agent": user_agent(member)}
        )

    # -- transport ------------------------------------------------------------------------

    async def _authenticate(self, endpoint: str) -> None:
        assert self._username is not None and self._password_file is not None
        password = self._password_file.read_text(encoding="utf-8").strip()
        r = await self._http.post(f"{endpoint}/v3/auth/authenticate", json={"name": self._username, "password": password})
        if r.status_code != 200:
            raise CoordinationUnavailable(f"etcd {endpoint}: authentication as {self._username!r} failed ({r.status_code})")
        self._token = r.json().get("token")

    async def _post(self, path: str, body: dict[str, Any], *, timeout: float | None = None) -> dict[str, Any]:
        """POST to the current endpoint, moving on to the next one on connection errors."""
        errors: list[str] = []
        for _ in range(len(self.endpoints)):
            endpoint = self.endpoints[self._current]
            try:
                if self._username and self._token is None:
                    await self._authenticate(endpoint)
                headers = {"Authorization": self._token} if self._token else {}
                r = await self._http.post(f"{endpoint}{path}", json=body, headers=headers, timeout=timeout or self._timeout)
            except httpx.HTTPError as exc:
                errors.append(f"{endpoint}: {type(exc).__name__}: {exc}".rstrip(": "))
                self._current = (self._current + 1) % len(self.endpoints)
                continue
            data: dict[str, Any] = r.json() if r.content else {}
            if r.status_code == 200:
                header = data.get("header") or {}
                if "revision" in header:
                    self._revision = max(self._revision, int(header["revision"]))
                return data
            message = str(data.get("message") or data.get("error") or r.text)[:300]
            if "lease not found" in message:
                raise LeaseLost(f"etcd: lease of member {self.member} not found")
            if r.status_code == 401 and self._username:
                self._token = None
            errors.append(f"{endpoint}: HTTP {r.status_code}: {message}")
            self._current = (self._current + 1) % len(self.endpoints)  # no leader here, perhaps
        raise CoordinationUnavailable("etcd unreachable: " + "; ".join(errors))

    # -- lease ----------------------------------------------------------------------------

    async def join(self) -> None:
        """See :meth:`gitopsd.coord.base.Backend.join`.

        A previous lease of ours that expired only locally (the backend was unreachable) is
        revoked first: etcd restarts the TTLs of surviving leases when it elects a leader, so
        it could otherwise hold our old locks for another TTL.
        """
        if self._lease is not None:
            old, self._lease = self._lease, None
            try:
                await self._post("/v3/lease/revoke", {"ID": old})
            except (CoordinationUnavailable, LeaseLost):
                pass
        started = time.monotonic()
        granted = await self._post("/v3/lease/grant", {"TTL": math.ceil(self.ttl)})
        if "ID" not in granted:
            raise CoordinationUnavailable(f"etcd: lease grant refused: {granted.get('error', granted)}")
        self._lease = str(granted["ID"])
        value = json.dumps({"advertise_url": self.advertise_url, "weight": self.weight})
        await self._post("/v3/kv/put", {"key": _b64(self._key("members", self.member)), "value": _b64(value), "lease": self._lease})
        self._valid_until = started + self.ttl

    async def keepalive(self) -> None:
        """See :meth:`gitopsd.coord.base.Backend.keepalive`."""
        if self._lease is None:
            raise LeaseLost("not joined")
        started = time.monotonic()
        answer = await self._post("/v3/lease/keepalive", {"ID": self._lease})
        result = answer.get("result") or {}
        if int(result.get("TTL") or 0) <= 0:
            self._lease = None
            raise LeaseLost(f"etcd: lease of member {self.member} expired")
        self._valid_until = started + self.ttl

    def valid(self, margin: float = 0.0) -> bool:
        """See :meth:`gitopsd.coord.base.Backend.valid`."""
        return self._lease is not None and time.monotonic() < self._valid_until - margin

    async def leave(self) -> None:
        """Revoke the lease: etcd deletes the member key and every lock of ours at once."""
        lease, self._lease = self._lease, None
        self._valid_until = 0.0
        if lease is not None:
            await self._post("/v3/lease/revoke", {"ID": lease})

    # -- members and locks ----------------------------------------------------------------

    def _key(self, kind: str, name: str) -> str:
        return f"{self.prefix}/{kind}/{name}"

    async def _range(self, kind: str) -> list[dict[str, Any]]:
        start = f"{self.prefix}/{kind}/"
        answer = await self._post("/v3/kv/range", {"key": _b64(start), "range_end": _prefix_end(start)})
        return list(answer.get("kvs") or [])

    async def members(self, *, with_ages: bool = False) -> list[MemberInfo]:
        """See :meth:`gitopsd.coord.base.Backend.members`; ``with_ages`` asks etcd each lease's remaining TTL."""
        out = []
        for kv in await self._range("members"):
            name = _unb64(kv["key"]).rsplit("/", 1)[-1]
            try:
                meta = json.loads(_unb64(kv.get("value", "")) or "{}")
            except ValueError:
                meta = {}
            age = None
            if with_ages and kv.get("lease"):
                ttl = await self._post("/v3/lease/timetolive", {"ID": kv["lease"]})
                if int(ttl.get("TTL") or -1) >= 0 and ttl.get("grantedTTL"):
                    age = float(int(ttl["grantedTTL"]) - int(ttl["TTL"]))
            out.append(MemberInfo(name, str(meta.get("advertise_url", "")), float(meta.get("weight", 1.0)), age))
        return sorted(out, key=lambda m: m.name)

    async def acquire(self, lock: str) -> bool:
        """Create the lock key bound to our lease if absent; True if it is (now) ours."""
        if self._lease is None:
            return False
        key = _b64(self._key("locks", lock))
        answer = await self._post(
            "/v3/kv/txn",
            {
                "compare": [{"key": key, "result": "EQUAL", "target": "CREATE", "create_revision": "0"}],
                "success": [{"request_put": {"key": key, "value": _b64(self.member), "lease": self._lease}}],
                "failure": [{"request_range": {"key": key}}],
            },
        )
        if answer.get("succeeded"):
            return True
        responses = answer.get("responses") or [{}]
        kvs = (responses[0].get("response_range") or {}).get("kvs") or []
        return bool(kvs) and _unb64(kvs[0].get("value", "")) == self.member and str(kvs[0].get("lease")) == self._lease

    async def release(self, lock: str) -> None:
        """Delete the lock key if it is ours (same member name and lease)."""
        if self._lease is None:
            return
        key = _b64(self._key("locks", lock))
        await self._post(
            "/v3/kv/txn",
            {
                "compare": [
                    {"key": key, "result": "EQUAL", "target": "VALUE", "value": _b64(self.member)},
                    {"key": key, "result": "EQUAL", "target": "LEASE", "lease": self._lease},
                ],
                "success": [{"request_delete_range": {"key": key}}],
            },
        )

    async def holders(self) -> dict[str, str]:
        """See :meth:`gitopsd.coord.base.Backend.holders`."""
        return {_unb64(kv["key"]).rsplit("/", 1)[-1]: _unb64(kv.get("value", "")) for kv in await self._range("locks")}

    async def wait_change(self, timeout: float) -> None:
        """Watch the prefix from the last revision seen; return on the first change or after ``timeout``."""
        start = f"{self.prefix}/"
        body = {"create_request": {"key": _b64(start), "range_end": _prefix_end(start), "start_revision": str(self._revision + 1)}}
        endpoint = self.endpoints[self._current]
        headers = {"Authorization": self._token} if self._token else {}
        with anyio.move_on_after(timeout):
            try:
                async with self._http.stream(
                    "POST", f"{endpoint}/v3/watch", json=body, headers=headers, timeout=httpx.Timeout(self._timeout, read=None)
                ) as r:
                    async for line in r.aiter_lines():
                        result = (json.loads(line) if line.strip() else {}).get("result") or {}
                        if result.get("events"):
                            return
            except (httpx.HTTPError, ValueError):
                await anyio.sleep(min(1.0, timeout))  # the next request moves to another endpoint

    async def aclose(self) -> None:
        """Close the HTTP connections."""
        await self._http.aclose()
