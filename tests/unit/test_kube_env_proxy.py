"""The cluster client reads the proxy environment once, then stops aiohttp's per-request lookups."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from gitopsd.kube.client import _resolve_env_once


def rest(proxy: str | None = None) -> SimpleNamespace:
    return SimpleNamespace(proxy=proxy, pool_manager=SimpleNamespace(_trust_env=True))


def test_the_environment_proxy_is_kept_and_lookups_stop(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    r = rest()
    _resolve_env_once(r, "https://api.example:6443")
    assert r.proxy == "http://proxy.example:3128"
    assert r.pool_manager._trust_env is False

    monkeypatch.setenv("NO_PROXY", "api.example")
    r = rest()
    _resolve_env_once(r, "https://api.example:6443")
    assert r.proxy is None and r.pool_manager._trust_env is False

    r = rest("http://kubeconfig-proxy:8080")  # the kubeconfig's proxy-url wins
    _resolve_env_once(r, "https://other.example:6443")
    assert r.proxy == "http://kubeconfig-proxy:8080"


def test_a_proxy_with_credentials_keeps_aiohttp_handling(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("NO_PROXY", "no_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", "http://user:secret@proxy.example:3128")
    r = rest()
    _resolve_env_once(r, "https://api.example:6443")
    assert r.proxy is None and r.pool_manager._trust_env is True
