"""`gitopsd run`'s event loop: uvloop by default, Python's own loop on request, a typo refused."""

from __future__ import annotations

import pytest

from gitopsd.cli.main import event_loop_options


def test_uvloop_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GITOPSD_EVENT_LOOP", raising=False)
    assert event_loop_options() == {"use_uvloop": True}


def test_asyncio_on_request(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITOPSD_EVENT_LOOP", "asyncio")
    assert event_loop_options() == {}


def test_an_unknown_loop_is_refused_by_name(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("GITOPSD_EVENT_LOOP", "uvlop")
    with pytest.raises(SystemExit) as exit_:
        event_loop_options()
    assert exit_.value.code == 2
    assert "GITOPSD_EVENT_LOOP='uvlop'" in capsys.readouterr().err
