"""What importing the daemon's modules does besides defining them, as counts in a fresh interpreter.

- No cyclic garbage collection while the CLI imports (gitopsd/core/imports.py), counted with
  ``gc.callbacks``: before the pause around the imports, importing the CLI and the supervisor
  ran about a hundred collections (one of the oldest generation), a tenth of the import's
  CPU, freeing nothing of note. ``gitopsd run`` imports the supervisor with the collector off
  already (and freezes what the start built once ready).
- No config model builds its validator (``defer_build``): the config's validation builds
  what it uses, once; a default made at import (``daemon: DaemonConfig = DaemonConfig()``)
  built three models' validators for nothing.
"""

from __future__ import annotations

import gc
import json
import subprocess
import sys
from typing import Any

import pytest

from gitopsd.core.imports import collection_paused

SCRIPT = r"""
import gc, json, sys
collections = []
gc.callbacks.append(lambda phase, info: phase == "stop" and collections.append(info["generation"]))
import gitopsd.cli.main
collections_cli = list(collections)
gc.disable()  # as `gitopsd run` imports the supervisor (cli/main.py, run())
import gitopsd.daemon.supervisor
gc.enable()
from pydantic import BaseModel
import gitopsd.plugin.config, gitopsd.plugin.options
built = sorted(
    f"{m.__name__}.{name}" for m in (gitopsd.plugin.config, gitopsd.plugin.options) for name, cls in vars(m).items()
    if isinstance(cls, type) and issubclass(cls, BaseModel) and cls.__module__ == m.__name__ and cls.__pydantic_complete__
)
print(json.dumps({"collections": collections_cli, "enabled": gc.isenabled(), "frozen": gc.get_freeze_count(), "built": built}))
"""


@pytest.fixture(scope="module")
def seen() -> dict[str, Any]:
    """What importing the CLI, then the supervisor (as ``gitopsd run`` does), did in a fresh interpreter."""
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120, check=True)
    result: dict[str, Any] = json.loads(proc.stdout.splitlines()[-1])
    return result


def test_importing_the_cli_collects_nothing(seen: dict[str, Any]) -> None:
    assert seen["enabled"], "the import left the collector off"
    assert seen["frozen"] > 10_000, "what the imports built is not frozen"
    # The interpreter's own start runs a few before gitopsd is imported; between the two
    # paused blocks (gitopsd/__init__.py, cli/main.py) one more may run, on the few objects
    # allocated since the freeze.
    assert len(seen["collections"]) <= 6 and 2 not in seen["collections"], seen["collections"]


def test_importing_the_daemon_builds_no_config_model(seen: dict[str, Any]) -> None:
    assert seen["built"] == []


@pytest.mark.parametrize("enabled", [True, False])
def test_collection_paused_restores_the_collector(enabled: bool) -> None:
    was = gc.isenabled()
    try:
        gc.enable() if enabled else gc.disable()
        with pytest.raises(ImportError), collection_paused():
            assert not gc.isenabled()
            raise ImportError("a failed import inside the block")
        assert gc.isenabled() is enabled
    finally:
        gc.enable() if was else gc.disable()


def test_no_default_factory_has_a_text_signature() -> None:
    """Pydantic asks every ``default_factory`` for its signature when it builds a validator;
    for a built-in like ``list`` that means tokenizing its text signature (and compiling the
    tokenizer's regular expression, ~4 ms of the start): the config models use
    :func:`gitopsd.plugin.options.empty_list` instead."""
    from pydantic import BaseModel

    import gitopsd.plugin.config
    import gitopsd.plugin.options

    parsed = [
        f"{m.__name__}.{name}.{field}"
        for m in (gitopsd.plugin.config, gitopsd.plugin.options)
        for name, cls in vars(m).items()
        if isinstance(cls, type) and issubclass(cls, BaseModel) and cls.__module__ == m.__name__
        for field, info in cls.model_fields.items()
        if getattr(info.default_factory, "__text_signature__", None) is not None
    ]
    assert parsed == []
    a, b = gitopsd.plugin.config.PolicyConfig(), gitopsd.plugin.config.PolicyConfig()
    assert a.namespaces == [] and a.namespaces is not b.namespaces
