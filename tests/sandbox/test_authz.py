"""SelfSubjectAccessReview: the sandbox's admin token may do everything, and says so."""

from __future__ import annotations

import pytest

from .conftest import Http

pytestmark = pytest.mark.anyio

SSAR = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"


def review(**attributes: str) -> dict[str, object]:
    return {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SelfSubjectAccessReview",
        "spec": {"resourceAttributes": attributes},
    }


async def test_admin_token_is_allowed_everything(http: Http) -> None:
    body = review(verb="delete", group="apps", resource="deployments", namespace="web")
    code, answer = await http.call("POST", SSAR, body)
    assert code == 201
    assert answer["kind"] == "SelfSubjectAccessReview"
    assert answer["spec"] == body["spec"]
    assert answer["status"]["allowed"] is True
    assert http.sb.counters()["writes"] == 0  # a question, not a write


async def test_bad_reviews_and_strangers_are_refused(http: Http) -> None:
    code, answer = await http.call("POST", SSAR, review(verb="get"), token="not-the-token")
    assert code == 401 and answer["reason"] == "Unauthorized"
    code, answer = await http.call("POST", SSAR, {"kind": "ConfigMap"})
    assert code == 400 and "SelfSubjectAccessReview" in answer["message"]
    code, answer = await http.call("POST", SSAR, {"kind": "SelfSubjectAccessReview", "spec": {}})
    assert code == 422 and answer["reason"] == "Invalid"
    code, answer = await http.call("GET", SSAR)
    assert code == 405 and answer["reason"] == "MethodNotAllowed"  # as the real API server answers
