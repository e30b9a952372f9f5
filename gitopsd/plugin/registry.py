"""The registry of plugin types (and plugin options models) that config validation looks names up in."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from gitopsd.plugin.interfaces import Generator, Notifier, Options, Renderer, Source


@dataclass(frozen=True, slots=True)
class TypeRegistry:
    """Source, renderer, notifier and generator types by name, as the plugins registered them.

    ``plugins`` names every installed plugin (what a ``[plugins.NAME]`` table may name);
    ``plugin_options`` maps those that declare options (``gitopsd_plugin_options``) to their model.
    ``generators`` is looked up on first use (``generator_types`` is called once then): only
    appsets need generator types, and building them costs a daemon without appsets its start.
    """

    sources: dict[str, type[Source]] = field(default_factory=dict)
    renderers: dict[str, type[Renderer]] = field(default_factory=dict)
    notifiers: dict[str, type[Notifier]] = field(default_factory=dict)
    plugins: tuple[str, ...] = ()
    plugin_options: dict[str, type[Options]] = field(default_factory=dict)
    generator_types: Callable[[], dict[str, type[Generator]]] = dict
    _generators: dict[str, type[Generator]] | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def generators(self) -> dict[str, type[Generator]]:
        """Generator types by name (the ``gitopsd_generator_types`` hook, called on first use)."""
        found = self._generators
        if found is None:
            found = self.generator_types()
            object.__setattr__(self, "_generators", found)  # frozen: a cache, not a change
        return found

    def detect_renderer(self, names: set[str]) -> str:
        """The renderer whose ``detect`` files appear in ``names`` (top-level file names); else plain."""
        for type_name, cls in sorted(self.renderers.items()):
            if cls.detect and names.intersection(cls.detect):
                return type_name
        return "plain"
