"""SelfSubjectAccessReview for the sandbox: "may I?" questions, answered for the admin token.

The sandbox has one credential, its admin token, which may do everything; so every review
that passed authentication is allowed. ``POST /apis/authorization.k8s.io/v1/selfsubjectaccessreviews``
returns the review with ``status.allowed`` like a real API server (``gitopsd doctor`` and
``kubectl auth can-i`` ask this).
"""

from __future__ import annotations

import json
from typing import Any

from .status import ApiError, bad_request

PATH = ("apis", "authorization.k8s.io", "v1", "selfsubjectaccessreviews")


def review(body: bytes) -> tuple[int, dict[str, Any]]:
    """(201, the review with its status) for a SelfSubjectAccessReview request body."""
    try:
        obj = json.loads(body or b"null")
    except ValueError as exc:
        raise bad_request(f"error decoding request body: {exc}") from None
    if not isinstance(obj, dict) or obj.get("kind") != "SelfSubjectAccessReview":
        raise bad_request("expected a SelfSubjectAccessReview")
    spec = obj.get("spec") or {}
    if not (spec.get("resourceAttributes") or spec.get("nonResourceAttributes")):
        raise ApiError(422, "Invalid", "SelfSubjectAccessReview: exactly one of nonResourceAttributes or resourceAttributes must be specified")
    return 201, {
        "kind": "SelfSubjectAccessReview",
        "apiVersion": "authorization.k8s.io/v1",
        "metadata": {"creationTimestamp": None},
        "spec": spec,
        "status": {"allowed": True, "reason": "sandbox: the admin token may do everything"},
    }
