"""Post-render transform ``labels``: put configured labels and annotations on every object.

A hook-only plugin with options, declared through ``gitopsd_plugin_options``::

    [plugins.labels]
    labels = { team = "platform" }
    annotations = { "example.com/runbook" = "https://runbooks.example.com/platform" }

    [apps.web.plugins.labels]          # this app's override: replaces the whole `labels` table
    labels = { team = "web" }

``gitopsd check`` validates both tables with :class:`LabelsOptions`, with messages that say
what a valid label looks like rather than quoting a regular expression.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, Field

import gitopsd

_NAME = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
RESERVED_PREFIX = "gitopsd.dev/"


def _key(key: str) -> str:
    """A label or annotation key: ``[prefix/]name``, as Kubernetes accepts it."""
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > 253 or not _DNS_SUBDOMAIN.fullmatch(prefix)):
        raise ValueError(f"key {key!r}: the prefix before '/' must be a DNS name like 'example.com'")
    if not name or len(name) > 63 or not _NAME.fullmatch(name):
        raise ValueError(
            f"key {key!r}: the name must be 1 to 63 letters, digits, '-', '_' or '.', "
            "starting and ending with a letter or digit"
        )
    if key.startswith(RESERVED_PREFIX):
        raise ValueError(f"key {key!r}: keys under {RESERVED_PREFIX} are gitopsd's own")
    return key


def _label_value(value: str) -> str:
    if value and (len(value) > 63 or not _NAME.fullmatch(value)):
        raise ValueError(
            f"label value {value!r}: use at most 63 letters, digits, '-', '_' or '.', "
            "starting and ending with a letter or digit (annotations take any text)"
        )
    return value


Key = Annotated[str, AfterValidator(_key)]
LabelValue = Annotated[str, AfterValidator(_label_value)]


class LabelsOptions(gitopsd.Options):
    """Options of the ``labels`` post-render transform (``[plugins.labels]``)."""

    labels: dict[Key, LabelValue] = Field(default_factory=dict, description="Labels to add to every object.")
    annotations: dict[Key, str] = Field(default_factory=dict, description="Annotations to add to every object.")
    kinds: list[str] = Field(default_factory=list, description="Only objects of these kinds; empty: every kind.")
    overwrite: gitopsd.Bool = Field(False, description="Replace values the manifests already set (default: theirs win).")


@gitopsd.hookimpl
def gitopsd_plugin_options() -> type[gitopsd.Options]:
    return LabelsOptions


@gitopsd.hookimpl
def gitopsd_post_render(manifests: list[gitopsd.Manifest], options: LabelsOptions) -> list[gitopsd.Manifest] | None:
    if not options.labels and not options.annotations:
        return None  # nothing configured: leave the list as it is
    return [_stamp(m, options) if not options.kinds or m.get("kind") in options.kinds else m for m in manifests]


def _stamp(manifest: gitopsd.Manifest, options: LabelsOptions) -> gitopsd.Manifest:
    metadata = dict(manifest.get("metadata") or {})
    for field, extra in (("labels", options.labels), ("annotations", options.annotations)):
        if not extra:
            continue
        current = metadata.get(field) or {}
        metadata[field] = {**current, **extra} if options.overwrite else {**extra, **current}
    return {**manifest, "metadata": metadata}
