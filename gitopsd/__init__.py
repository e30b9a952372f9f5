"""gitopsd: a pull-based GitOps daemon for bastion hosts.

This module is the public surface for plugin authors: the hook marker, the
classes to subclass, the models passed between stages, the events and errors.
"""

from gitopsd.core.imports import collection_paused

with collection_paused():  # the heavy layers: see gitopsd/core/imports.py
    from gitopsd.core.errors import (
        ApplyError,
        CommandFailed,
        ConfigError,
        GitopsdError,
        NotifyError,
        RenderError,
        SourceError,
        ToolMissing,
    )
    from gitopsd.core.events import EVENT_TYPES, Event, Severity
    from gitopsd.core.models import (
        Artifact,
        Health,
        HealthStatus,
        Manifest,
        ObjectRef,
        SyncResult,
    )
    from gitopsd.core.secrets import Secret, read_secret_file
    from gitopsd.core.version import USER_AGENT, __version__
    from gitopsd.plugin.config import AppConfig, Bool, Duration
    from gitopsd.plugin.hookspecs import hookimpl
    from gitopsd.plugin.interfaces import (
        Generator,
        GeneratorContext,
        Notifier,
        NotifierOptions,
        Options,
        PluginContext,
        Renderer,
        SharedState,
        Source,
        Tools,
    )

__all__ = [
    "EVENT_TYPES",
    "USER_AGENT",
    "AppConfig",
    "ApplyError",
    "Artifact",
    "Bool",
    "CommandFailed",
    "ConfigError",
    "Duration",
    "Event",
    "Generator",
    "GeneratorContext",
    "GitopsdError",
    "Health",
    "HealthStatus",
    "Manifest",
    "Notifier",
    "NotifierOptions",
    "NotifyError",
    "ObjectRef",
    "Options",
    "PluginContext",
    "RenderError",
    "Renderer",
    "Secret",
    "Severity",
    "SharedState",
    "Source",
    "SourceError",
    "SyncResult",
    "ToolMissing",
    "Tools",
    "__version__",
    "hookimpl",
    "read_secret_file",
]
