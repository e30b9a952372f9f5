"""Exceptions that cross module boundaries.

Every message names what is wrong and where (file, app, key, object) and never
contains a secret: callers put only names and paths into them.
"""

from __future__ import annotations


class GitopsdError(Exception):
    """Base class of every error gitopsd raises on purpose."""

    reason: str = "Error"
    """Short CamelCase cause, copied into events' ``reason``."""


class ConfigError(GitopsdError):
    """The configuration is invalid; ``errors`` holds every problem found, not only the first."""

    reason = "InvalidConfig"

    def __init__(self, errors: list[str]):
        self.errors = errors
        super().__init__("\n".join(errors))


class ToolMissing(GitopsdError):
    """An external program (git, helm, kubectl, kustomize) is not installed or not executable."""

    reason = "ToolMissing"


class CommandFailed(GitopsdError):
    """A subprocess exited non-zero or timed out. The message keeps its stderr (scrubbed)."""

    reason = "CommandFailed"

    def __init__(self, message: str, *, returncode: int | None = None, stderr: str = ""):
        self.returncode = returncode
        self.stderr = stderr
        super().__init__(message)


class SourceError(GitopsdError):
    """A source could not poll or fetch. ``reason`` says which kind of failure it was."""

    reason = "FetchFailed"

    def __init__(self, message: str, *, reason: str | None = None):
        if reason:
            self.reason = reason
        super().__init__(message)


class RenderError(GitopsdError):
    """Rendering failed: bad YAML (file and document named), a tool error, a hook error."""

    reason = "RenderFailed"


class ApplyError(GitopsdError):
    """Applying to a cluster failed. ``objects`` names the objects and their errors."""

    reason = "ApplyFailed"

    def __init__(self, message: str, *, reason: str | None = None, objects: dict[str, str] | None = None):
        if reason:
            self.reason = reason
        self.objects = objects or {}
        super().__init__(message)


class NotifyError(GitopsdError):
    """A notifier could not deliver a message.

    Attributes:
        permanent: True when retrying cannot help (revoked URL, bad token, unknown channel).
        retry_after: Seconds the receiver asked us to wait (HTTP Retry-After), if any.
    """

    reason = "NotifyFailed"

    def __init__(self, message: str, *, permanent: bool = False, retry_after: float | None = None):
        self.permanent = permanent
        self.retry_after = retry_after
        super().__init__(message)


class InternalError(GitopsdError):
    """A bug or an unexpected failure inside a reconcile; the traceback goes to the log only."""

    reason = "InternalError"
