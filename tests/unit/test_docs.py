"""The reference docs are generated from the code; the committed files must be current."""

from __future__ import annotations

from pathlib import Path

from gitopsd.cli.docgen import generate

ROOT = Path(__file__).resolve().parents[2]


def test_generated_docs_are_current() -> None:
    for path, text in generate(ROOT).items():
        assert path.exists(), f"{path.relative_to(ROOT)} is missing: run python -m gitopsd.cli.docgen"
        assert path.read_text(encoding="utf-8") == text, (
            f"{path.relative_to(ROOT)} is out of date: run python -m gitopsd.cli.docgen"
        )


def test_every_option_and_hook_is_documented() -> None:
    from gitopsd.plugin import hookspecs
    from gitopsd.plugin.config import AppConfig, DaemonConfig

    docs = generate(ROOT)
    config_md = docs[ROOT / "docs" / "configuration.md"]
    for model in (DaemonConfig, AppConfig):
        for name in model.model_fields:
            assert f"`{name}`" in config_md or name in ("name", "tools", "webhooks"), name
    hooks_md = docs[ROOT / "docs" / "hooks.md"]
    for name in dir(hookspecs):
        if name.startswith("gitopsd_"):
            assert f"## `{name}(" in hooks_md
