"""The local source: a stable content digest, and change notifications without polling."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from gitopsd.plugin.interfaces import PluginContext
from gitopsd_plugins.local import LocalOptions, LocalSource

pytestmark = pytest.mark.anyio


def source(tmp_path: Path, path: str = "m") -> LocalSource:
    return LocalSource(LocalOptions(path=Path(path), debounce=0.05), PluginContext(state_dir=tmp_path / "state", config_dir=tmp_path))


async def test_revision_is_a_stable_content_digest(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "a.yaml").write_text("x: 1\n")
    first = await source(tmp_path).latest_revision()
    assert first.startswith("sha256:") and first == await source(tmp_path).latest_revision()
    (tmp_path / "m" / "a.yaml").write_text("x: 2\n")
    second = await source(tmp_path).latest_revision()
    assert second != first
    artifact = await source(tmp_path).fetch(second)
    assert artifact.path == tmp_path / "m" and artifact.digest == second


async def test_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    from gitopsd.core.errors import SourceError

    with pytest.raises(SourceError, match="is not a directory"):
        await source(tmp_path, "nope").latest_revision()


async def test_a_change_is_reported_within_a_second(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    src = source(tmp_path)
    changes = src.changes()
    seen = anyio.Event()

    async def follow() -> None:
        async for _ in changes:
            seen.set()
            return

    async with anyio.create_task_group() as tg:
        tg.start_soon(follow)
        await anyio.sleep(0.2)  # let the watcher start
        (tmp_path / "m" / "new.yaml").write_text("x: 1\n")
        with anyio.fail_after(1.5):
            await seen.wait()
        tg.cancel_scope.cancel()


async def test_a_symlink_out_of_the_directory_is_refused(tmp_path: Path) -> None:
    from gitopsd.core.errors import SourceError

    (tmp_path / "m").mkdir()
    (tmp_path / "secret.yaml").write_text("x: 1\n")
    (tmp_path / "m" / "inside.yaml").write_text("x: 1\n")
    (tmp_path / "m" / "alias.yaml").symlink_to(tmp_path / "m" / "inside.yaml")  # inside: fine
    assert (await source(tmp_path).latest_revision()).startswith("sha256:")
    (tmp_path / "m" / "leak.yaml").symlink_to(tmp_path / "secret.yaml")
    with pytest.raises(SourceError, match=r"leak\.yaml is a symlink to .*secret\.yaml, outside"):
        await source(tmp_path).latest_revision()
