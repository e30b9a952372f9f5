"""The registry of plugin types (and plugin options models) that config validation looks names up in."""

from __future__ import annotations

from dataclasses import dataclass, field

from gitopsd.plugin.interfaces import Generator, Notifier, Options, Renderer, Source


@dataclass(frozen=True, slots=True)
class TypeRegistry:
    """Source, renderer, notifier and generator types by name, as the plugins registered them.

    ``plugins`` names every installed plugin (what a ``[plugins.NAME]`` table may name);
    ``plugin_options`` maps those that declare options (``gitopsd_plugin_options``) to their model.
    """

    sources: dict[str, type[Source]] = field(default_factory=dict)
    renderers: dict[str, type[Renderer]] = field(default_factory=dict)
    notifiers: dict[str, type[Notifier]] = field(default_factory=dict)
    plugins: tuple[str, ...] = ()
    plugin_options: dict[str, type[Options]] = field(default_factory=dict)
    generators: dict[str, type[Generator]] = field(default_factory=dict)

    def detect_renderer(self, names: set[str]) -> str:
        """The renderer whose ``detect`` files appear in ``names`` (top-level file names); else plain."""
        for type_name, cls in sorted(self.renderers.items()):
            if cls.detect and names.intersection(cls.detect):
                return type_name
        return "plain"
