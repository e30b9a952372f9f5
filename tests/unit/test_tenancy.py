"""Pure tenancy rules: policies, owner decisions, inventory record names and encoding, config."""

from __future__ import annotations

from typing import Any

import pytest

from gitopsd.core.errors import ConfigError
from gitopsd.core.models import ObjectRef
from gitopsd.engine.policy import Candidate, config_warnings, kind_matches, violations
from gitopsd.kube.inventory import InventoryRecord, decode, encode, record_name
from gitopsd.kube.ownership import OWNER_ANNOTATION, admit, may_prune
from gitopsd.plugin.config import AppConfig, PluginTable, PolicyConfig
from gitopsd.plugin.loading import validate_config
from gitopsd.plugin.manager import PluginManager

TEAM_A = PolicyConfig(
    namespaces=["team-a", "team-a-*"],
    cluster_kinds=["storage.k8s.io/StorageClass"],
    deny_kinds=["rbac.authorization.k8s.io/ClusterRoleBinding", "Secret"],
)


def app(policy: PolicyConfig | None = TEAM_A, namespace: str = "team-a") -> AppConfig:
    base = AppConfig(name="web", cluster="main", namespace=namespace, source=PluginTable(type="local"))
    return base.with_policy("team-a" if policy else None, policy)


def ref(kind: str, name: str, namespace: str = "", group: str = "") -> ObjectRef:
    return ObjectRef(group, "v1", kind, namespace, name)


def test_no_policy_allows_everything() -> None:
    objects = [Candidate(ref("ClusterRoleBinding", "x", group="rbac.authorization.k8s.io"), False)]
    assert violations(app(None), objects) == []


def test_each_rule_names_the_object_and_the_rule() -> None:
    objects = [
        Candidate(ref("ConfigMap", "ok", "team-a"), True),
        Candidate(ref("ConfigMap", "ok2", "team-a-staging"), True),
        Candidate(ref("ConfigMap", "elsewhere", "team-b"), True),
        Candidate(ref("Secret", "s", "team-a"), True),
        Candidate(ref("ClusterRoleBinding", "admin", group="rbac.authorization.k8s.io"), False),
        Candidate(ref("ClusterRole", "reader", group="rbac.authorization.k8s.io"), False),
        Candidate(ref("StorageClass", "fast", group="storage.k8s.io"), False),
    ]
    found = {(str(v.ref), v.rule) for v in violations(app(), objects)}
    assert found == {
        ("ConfigMap team-b/elsewhere", "namespaces"),
        ("Secret team-a/s", "deny_kinds"),
        ("ClusterRoleBinding.rbac.authorization.k8s.io admin", "deny_kinds"),
        ("ClusterRole.rbac.authorization.k8s.io reader", "cluster_kinds"),
    }
    (message,) = [v.message for v in violations(app(), objects[2:3])]
    assert message == "namespace 'team-b' is not allowed by policy team-a (namespaces: [team-a, team-a-*])"


def test_the_apps_own_namespace_is_allowed_only_when_it_matches() -> None:
    own = [Candidate(ref("Namespace", "team-a"), False)]
    assert violations(app(), own) == []
    other = [Candidate(ref("Namespace", "team-a-2"), False)]
    assert [v.rule for v in violations(app(), other)] == ["cluster_kinds"]
    outside = app(namespace="team-z")
    assert [v.rule for v in violations(outside, [Candidate(ref("Namespace", "team-z"), False)])] == ["cluster_kinds"]


def test_kind_patterns() -> None:
    assert kind_matches("Secret", "", "Secret")
    assert kind_matches("ClusterRole", "rbac.authorization.k8s.io", "ClusterRole")
    assert kind_matches("rbac.authorization.k8s.io/ClusterRole", "rbac.authorization.k8s.io", "ClusterRole")
    assert not kind_matches("example.com/ClusterRole", "rbac.authorization.k8s.io", "ClusterRole")
    assert kind_matches("/Namespace", "", "Namespace")
    assert not kind_matches("/Namespace", "x.io", "Namespace")


def live(owner: str | None = None, app_label: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "x", "annotations": {}, "labels": {}}
    if owner:
        meta["annotations"][OWNER_ANNOTATION] = owner
    if app_label:
        meta["labels"]["gitopsd.dev/app"] = app_label
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta}


def test_owner_decisions() -> None:
    desired = live("gitopsd/web")
    common = {"owner": "gitopsd/web", "app_name": "web"}
    assert admit(desired, None, adopt=False, in_inventory=False, **common).allowed
    assert admit(desired, live("gitopsd/web"), adopt=False, in_inventory=False, **common).allowed
    shared = admit(desired, live("gitopsd/api"), adopt=True, in_inventory=True, **common)
    assert not shared.allowed and shared.action == "failed"
    assert shared.message.startswith("SharedResource: owned by gitopsd/api, not by gitopsd/web")
    other_instance = admit(desired, live("b/web"), adopt=True, in_inventory=True, **common)
    assert not other_instance.allowed
    foreign = admit(desired, live(), adopt=False, in_inventory=False, **common)
    assert not foreign.allowed and foreign.action == "skipped"
    assert foreign.message == (
        'exists and is not managed by gitopsd; set adopt = true on the app or annotate it gitopsd.dev/adopt: "true"'
    )
    adopted = admit(desired, live(), adopt=True, in_inventory=False, **common)
    assert adopted.allowed and adopted.adopted
    annotated = {**desired, "metadata": {**desired["metadata"], "annotations": {"gitopsd.dev/adopt": "true"}}}
    assert admit(annotated, live(), adopt=False, in_inventory=False, **common).adopted
    # Applied by an older gitopsd: our label, in our inventory -> ours, silently.
    migrated = admit(desired, live(app_label="web"), adopt=False, in_inventory=True, **common)
    assert migrated.allowed and not migrated.adopted
    # Our label but not in our inventory (another installation's older app of the same name).
    assert not admit(desired, live(app_label="web"), adopt=False, in_inventory=False, **common).allowed


def test_prune_needs_our_owner() -> None:
    assert may_prune(live("gitopsd/web"), "gitopsd/web") == ""
    assert may_prune(live("gitopsd/api"), "gitopsd/web") == "not deleted: owned by gitopsd/api, not by gitopsd/web"
    assert "no gitopsd.dev/owner" in may_prune(live(app_label="web"), "gitopsd/web")


def test_record_names_are_valid_and_distinct() -> None:
    assert record_name("gitopsd", "web") == "gitopsd-inventory.gitopsd.web"
    odd = record_name("Team_A", "web")
    assert odd.startswith("gitopsd-inventory.team-a.web-") and len(odd.rsplit("-", 1)[1]) == 8
    assert odd != record_name("team-a", "web")
    long = record_name("a" * 63, "b" * 53 + "c" * 200)
    assert len(long) <= 253


def test_record_round_trip() -> None:
    refs = frozenset({ObjectRef("", "v1", "ConfigMap", "default", "a"), ObjectRef("apps", "v1", "Deployment", "x", "d")})
    record = InventoryRecord("gitopsd", "web", refs)
    obj = encode("gitopsd-system", record)
    assert obj["metadata"]["name"] == "gitopsd-inventory.gitopsd.web"
    assert obj["metadata"]["namespace"] == "gitopsd-system"
    assert decode(obj) == record


def load(raw: dict[str, Any]) -> Any:
    return validate_config(raw, PluginManager(builtins_only=True).types)


def base(**apps: dict[str, Any]) -> dict[str, Any]:
    return {
        "clusters": {"main": {"kubeconfig": "/k"}},
        "apps": {
            name: {"cluster": "main", "source": {"type": "local", "path": "/m"}, **table}
            for name, table in apps.items()
        },
    }


def test_config_resolves_policies_and_the_default() -> None:
    raw = base(web={"policy": "a"}, api={}, free={})
    raw["policies"] = {"a": {"namespaces": ["default"]}, "b": {"namespaces": ["b-*"], "impersonate_user": "bob"}}
    raw["daemon"] = {"default_policy": "b", "instance": "blue"}
    config = load(raw)
    assert config.apps["web"].effective_policy == ("a", config.policies["a"])
    assert config.apps["api"].effective_policy == ("b", config.policies["b"])
    assert config.daemon.instance == "blue"


def test_config_errors_name_the_key() -> None:
    raw = base(web={"policy": "nope"})
    raw["policies"] = {"g": {"impersonate_groups": ["x"]}}
    raw["daemon"] = {"default_policy": "missing"}
    with pytest.raises(ConfigError) as info:
        load(raw)
    text = str(info.value)
    assert "apps.web.policy: unknown policy 'nope' (defined: g)" in text
    assert "daemon.default_policy: unknown policy 'missing'" in text
    assert "policies.g.impersonate_groups: needs impersonate_user" in text
    shape = base()
    shape["policies"] = {"k": {"deny_kinds": ["not a kind"]}}
    shape["daemon"] = {"instance": "Not_Valid"}
    with pytest.raises(ConfigError) as info:
        load(shape)
    text = str(info.value)
    assert "policies.k.deny_kinds: invalid kind 'not a kind'" in text
    assert "daemon.instance: invalid instance 'Not_Valid'" in text


def test_check_warnings() -> None:
    raw = base(one={"namespace": "x"}, two={"namespace": "x"}, three={"namespace": "y", "policy": "p"})
    raw["policies"] = {"p": {"namespaces": ["z"]}}
    warnings = config_warnings(load(raw))
    assert any(w.startswith("apps.one: no policy") for w in warnings)
    assert any(w.startswith("apps.two: renders the same objects as apps.one into cluster main") for w in warnings)
    assert any(w.startswith("apps.three.namespace: 'y' is not allowed by policy p") for w in warnings)
    assert not any(w.startswith("apps.three: no policy") for w in warnings)


def test_the_resolved_policy_costs_an_unrestricted_app_nothing() -> None:
    """The policy ``with_policy`` resolves is no declared private attribute: with one, pydantic
    calls back into Python for every AppConfig it validates (19 M instructions at 1000 apps).
    Copies, equality and pickling still carry it."""
    import pickle

    from gitopsd.plugin.config import AppConfig, PolicyConfig

    assert AppConfig.__pydantic_post_init__ is None
    app = AppConfig.model_validate({"name": "web", "cluster": "c", "source": {"type": "git"}})
    assert app.effective_policy is None and app.with_policy(None, None) is app
    rules = PolicyConfig(namespaces=["team-a"])
    limited = app.with_policy("team", rules)
    assert limited.effective_policy == ("team", rules) and app.effective_policy is None
    assert limited != app and limited == app.with_policy("team", rules)
    assert limited.with_policy("team", rules) is limited
    assert limited.model_copy(update={"namespace": "x"}).effective_policy == ("team", rules)
    assert pickle.loads(pickle.dumps(limited)).effective_policy == ("team", rules)
    assert limited.with_policy(None, None) == app and limited.with_policy(None, None).effective_policy is None
