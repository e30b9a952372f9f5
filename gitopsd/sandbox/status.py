"""Kubernetes ``Status`` objects and the exception that carries them."""

from __future__ import annotations

import json
from typing import Any


class ApiError(Exception):
    """An API error that the server turns into a ``Status`` response.

    ``reason`` and ``code`` follow the real API server (NotFound/404, Conflict/409, ...).
    """

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details
        self.headers = headers or {}

    def status(self) -> dict[str, Any]:
        """The ``Status`` object (kind Status, apiVersion v1)."""
        return status_failure(self.code, self.reason, self.message, self.details)


def status_failure(
    code: int, reason: str, message: str, details: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A failure ``Status`` dict."""
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details:
        body["details"] = details
    return body


def status_success(details: dict[str, Any] | None = None) -> dict[str, Any]:
    """A success ``Status`` dict (as returned by deletecollection and some deletes)."""
    body: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}
    if details:
        body["details"] = details
    return body


def _qualified(plural: str, group: str) -> str:
    return f"{plural}.{group}" if group else plural


def not_found(plural: str, group: str, name: str) -> ApiError:
    """404 NotFound for ``plural.group "name"``."""
    return ApiError(
        404,
        "NotFound",
        f'{_qualified(plural, group)} "{name}" not found',
        {"name": name, "group": group, "kind": plural},
    )


def already_exists(plural: str, group: str, name: str) -> ApiError:
    """409 AlreadyExists."""
    return ApiError(
        409,
        "AlreadyExists",
        f'{_qualified(plural, group)} "{name}" already exists',
        {"name": name, "group": group, "kind": plural},
    )


def conflict(plural: str, group: str, name: str, why: str) -> ApiError:
    """409 Conflict (``Operation cannot be fulfilled on ...``)."""
    return ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {_qualified(plural, group)} "{name}": {why}',
        {"name": name, "group": group, "kind": plural},
    )


def invalid(kind: str, group: str, name: str, causes: list[tuple[str, str, str]]) -> ApiError:
    """422 Invalid; ``causes`` are ``(type, field, message)``, e.g. ("FieldValueRequired", ...)."""
    qualified = f"{kind}.{group}" if group else kind
    parts = [f"{field}: {msg}" for _, field, msg in causes]
    text = parts[0] if len(parts) == 1 else "[" + ", ".join(parts) + "]"
    return ApiError(
        422,
        "Invalid",
        f'{qualified} "{name}" is invalid: {text}',
        {
            "name": name,
            "group": group,
            "kind": kind,
            "causes": [{"reason": t, "message": m, "field": f} for t, f, m in causes],
        },
    )


STRICT_DECODING = "strict decoding error: "
"""How a strict-validation message names what it refused (see :func:`invalid_patch`)."""


def invalid_patch(patch: Any, refusal: ApiError) -> ApiError:
    """422 Invalid for a patch whose result fails strict decoding.

    The real server answers a create, update or apply with an unknown or duplicate field
    with 400 (``... cannot be handled as a ...: strict decoding error: ...``), but a
    merge, JSON or strategic merge patch with 422, the error on the field ``patch`` (kubectl
    prints ``The request is invalid: patch: Invalid value: "map[...]": strict decoding
    error: ...``).
    """
    text = str(refusal)
    why = text[text.index(STRICT_DECODING):] if STRICT_DECODING in text else text
    cause = f"Invalid value: {json.dumps(_go_value(patch))}: {why}"
    return ApiError(
        422,
        "Invalid",
        f' "" is invalid: patch: {cause}',
        {"causes": [{"reason": "FieldValueInvalid", "message": cause, "field": "patch"}]},
    )


def _go_value(value: Any) -> str:
    """``value`` as Go's ``%v`` prints decoded JSON (maps with sorted keys)."""
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{_go_value(value[k])}" for k in sorted(value)) + "]"
    if isinstance(value, list):
        return "[" + " ".join(_go_value(v) for v in value) + "]"
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def bad_request(message: str) -> ApiError:
    """400 BadRequest."""
    return ApiError(400, "BadRequest", message)


def method_not_allowed(message: str = "the server does not allow this method on the requested resource") -> ApiError:
    """405 MethodNotAllowed."""
    return ApiError(405, "MethodNotAllowed", message)


def unsupported_media_type(content_type: str) -> ApiError:
    """415 UnsupportedMediaType."""
    return ApiError(
        415,
        "UnsupportedMediaType",
        f"the body of the request was in an unknown format - accepted media types include: "
        f"application/json, application/yaml, application/json-patch+json, application/merge-patch+json, "
        f"application/apply-patch+yaml, application/strategic-merge-patch+json (got {content_type!r})",
    )


def unauthorized() -> ApiError:
    """401 Unauthorized."""
    return ApiError(401, "Unauthorized", "Unauthorized")


def expired(message: str) -> ApiError:
    """410 Expired (a too-old resourceVersion)."""
    return ApiError(410, "Expired", message)
