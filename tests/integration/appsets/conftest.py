"""Appset tests reuse the operations tests' daemon, config and git helpers."""

from __future__ import annotations

from tests.integration.ops.conftest import env, http  # noqa: F401 - fixtures
