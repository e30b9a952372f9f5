"""The registry of plugin types (and plugin options models) that config validation looks names up in."""

from __future__ import annotations

from collections.abc import Callable

from gitopsd.plugin.interfaces import Generator, Notifier, Options, Renderer, Source


class TypeRegistry:
    """Source, renderer, notifier and generator types by name, as the plugins registered them.

    ``plugins`` names every installed plugin (what a ``[plugins.NAME]`` table may name);
    ``plugin_options`` maps those that declare options (``gitopsd_plugin_options``) to their model.
    ``generators`` is looked up on first use (``generator_types`` is called once then): only
    appsets need generator types, and building them costs a daemon without appsets its start.
    """

    __slots__ = ("_generators", "generator_types", "notifiers", "plugin_options", "plugins", "renderers", "sources")

    def __init__(
        self,
        *,
        sources: dict[str, type[Source]] | None = None,
        renderers: dict[str, type[Renderer]] | None = None,
        notifiers: dict[str, type[Notifier]] | None = None,
        plugins: tuple[str, ...] = (),
        plugin_options: dict[str, type[Options]] | None = None,
        generator_types: Callable[[], dict[str, type[Generator]]] = dict,
    ) -> None:
        self.sources: dict[str, type[Source]] = sources if sources is not None else {}
        self.renderers: dict[str, type[Renderer]] = renderers if renderers is not None else {}
        self.notifiers: dict[str, type[Notifier]] = notifiers if notifiers is not None else {}
        self.plugins = plugins
        self.plugin_options: dict[str, type[Options]] = plugin_options if plugin_options is not None else {}
        self.generator_types = generator_types
        self._generators: dict[str, type[Generator]] | None = None

    @property
    def generators(self) -> dict[str, type[Generator]]:
        """Generator types by name (the ``gitopsd_generator_types`` hook, called on first use)."""
        found = self._generators
        if found is None:
            found = self.generator_types()
            self._generators = found
        return found

    def detect_renderer(self, names: set[str]) -> str:
        """The renderer whose ``detect`` files appear in ``names`` (top-level file names); else plain."""
        for type_name, cls in sorted(self.renderers.items()):
            if cls.detect and names.intersection(cls.detect):
                return type_name
        return "plain"
