"""The option models every plugin type builds on, and the tool paths from ``[daemon.tools]``.

Kept apart from :mod:`gitopsd.plugin.interfaces` so the config models can use them without
importing the plugin interfaces (which refer to the config's ``AppConfig``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from gitopsd.core.errors import ToolMissing
from gitopsd.core.events import Severity


def empty_list() -> list[Any]:
    """A new empty list: the ``default_factory`` of list options, in place of ``list`` itself.

    Pydantic asks each default factory for its signature when it builds a model's validator;
    for ``list`` (a built-in with a text signature) ``inspect`` tokenizes that text, and the
    first time compiles the tokenizer's large regular expression: about 4 ms of every start.
    A Python function's signature comes from its code object. Same result: a new list each time.
    """
    return []


class Options(BaseModel):
    """Base of every plugin options model: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


@dataclass(frozen=True, slots=True)
class Tools:
    """Paths of the external programs gitopsd runs (``[daemon.tools]``)."""

    git: str = "git"
    helm: str = "helm"
    kubectl: str = "kubectl"
    kustomize: str = ""  # empty: use `kubectl kustomize`
    sops: str = "sops"

    def require(self, name: str) -> str:
        """Absolute path of tool ``name``; ToolMissing naming ``daemon.tools.<name>`` if absent."""
        import shutil

        value = getattr(self, name)
        found = shutil.which(value) if value else None
        if not found or not os.access(found, os.X_OK):
            raise ToolMissing(
                f"{name} not found: {value!r} is not an executable on PATH "
                f"(set daemon.tools.{name} in the config)"
            )
        return found


class NotifierOptions(Options):
    """Options every notifier accepts, on top of its own: which events it wants, and pacing."""

    events: list[str] = Field(default_factory=empty_list, description="Event names to send; empty means all.")
    min_severity: Severity = Field(Severity.INFO, description="Drop events below this severity.")
    apps: list[str] = Field(default_factory=lambda: ["*"], description="App name glob patterns to send.")
    dedupe_window: float = Field(300.0, description="Seconds within which an identical event is sent once.")
    rate_per_second: float = Field(1.0, gt=0, description="Messages per second at most.")
    queue_size: int = Field(1000, ge=1, description="Events kept while the receiver is slow; the oldest are dropped.")
    max_retries: int = Field(8, ge=0, description="Retries of a transient failure before giving up.")
    timeout: float = Field(10.0, gt=0, description="Seconds per delivery attempt.")
