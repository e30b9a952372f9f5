"""The plugin contract: every hook gitopsd calls, with what it means.

Hooks are synchronous and cheap. They either *register* things (types whose
async methods the engine runs) or *observe/transform* plain data. Implement them
in a module with :data:`gitopsd.hookimpl` and expose the module through the
``gitopsd`` entry-point group::

    [project.entry-points.gitopsd]
    mything = "my_package.gitopsd_plugin"

The registered object may also be a class instance or any object with hookimpl-marked
attributes (``mything = "my_package.gitopsd_plugin:plugin"``). The entry-point name is
the plugin's name: ``gitopsd plugins`` shows it, ``GITOPSD_DISABLE_PLUGINS`` takes it and
it names the plugin's ``[plugins.NAME]`` options table.

A hookimpl whose name starts with ``gitopsd_`` but matches no hook below is an
error at start-up (pluggy's ``check_pending``), so a typo never goes unnoticed.

An implementation may accept any subset of a hook's arguments, by name: the
``options`` argument of ``gitopsd_post_render``, ``gitopsd_health`` and
``gitopsd_event`` was added without breaking implementations that do not take it.
``hookwrapper``/``wrapper`` implementations are not supported on those three hooks
(gitopsd calls each implementation itself to give it its own options).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

from gitopsd.core.events import Event
from gitopsd.core.models import HealthStatus, Manifest
from gitopsd.plugin.interfaces import Generator, Notifier, Options, Renderer, Source

if TYPE_CHECKING:
    from gitopsd.plugin.config import AppConfig

PROJECT_NAME = "gitopsd"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def gitopsd_source_types() -> dict[str, type[Source]]:
    """Register source types.

    Called once, when the plugin manager is set up (before the config is validated).

    Returns:
        A mapping of type name (the ``type`` in an app's ``source`` table, e.g. ``"git"``)
        to a :class:`gitopsd.Source` subclass. Its ``Options`` model validates the rest
        of the table. Return ``{}`` or ``None`` to register nothing.

    Not firstresult: results of all plugins are merged; two plugins registering the same
    name is an error naming both.
    """


@hookspec
def gitopsd_renderer_types() -> dict[str, type[Renderer]]:
    """Register renderer types.

    Called once, when the plugin manager is set up.

    Returns:
        A mapping of type name (the ``type`` in an app's ``render`` table, e.g. ``"helm"``)
        to a :class:`gitopsd.Renderer` subclass. A renderer whose ``detect`` names files
        (e.g. ``("Chart.yaml",)``) is chosen automatically for an app without a ``render``
        table when such a file is at the top of the artifact's path.

    Not firstresult: results are merged; duplicate names are an error.
    """


@hookspec
def gitopsd_notifier_types() -> dict[str, type[Notifier]]:
    """Register notifier types.

    Called once, when the plugin manager is set up.

    Returns:
        A mapping of type name (the ``type`` of a ``[notifiers.NAME]`` table, e.g.
        ``"slack"``) to a :class:`gitopsd.Notifier` subclass. Its ``Options`` model, a
        subclass of :class:`gitopsd.NotifierOptions`, validates the table.

    Not firstresult: results are merged; duplicate names are an error.
    """


@hookspec
def gitopsd_plugin_options() -> type[Options] | None:
    """Declare the options of this plugin: the model that validates its ``[plugins.NAME]`` table.

    Called once, when the plugin manager is set up. ``NAME`` is the plugin's entry-point
    name (for a plugin registered in code, the name it was registered under). The table is
    validated when the config is loaded, so ``gitopsd check`` reports
    ``plugins.NAME.key: message`` like any other option; a table for a plugin that is not
    installed is an error. Each app may override keys in ``[apps.APP.plugins.NAME]``: that
    table is merged over the global one key by key (a key's value is replaced, not merged)
    and validated by the same model.

    The validated instance is passed as ``options`` to this plugin's own implementations of
    ``gitopsd_post_render`` (the app's merged options), ``gitopsd_event`` (the options of
    the event's app, else the global ones) and ``gitopsd_health`` (the global ones).

    Without a ``[plugins.NAME]`` table the model is validated from ``{}``: give every field
    a default so that installing the plugin does not make existing configs invalid, or
    accept that a required field must be set in ``[plugins.NAME]`` (an app table only
    overrides). A plugin that does not implement this hook takes no options: any key in its
    table is an error.

    Returns:
        A subclass of :class:`gitopsd.Options` (a pydantic model that forbids unknown keys
        and is frozen); ``None`` to take no options.

    Not firstresult: each plugin's own result is used for that plugin only.
    """


@hookspec
def gitopsd_generator_types() -> dict[str, type[Generator]]:
    """Register appset generator types.

    Called once, when the plugin manager is set up.

    Returns:
        A mapping of type name (the ``type`` of an entry in an appset's ``generators``
        list, e.g. ``"git-directories"``) to a :class:`gitopsd.Generator` subclass. Its
        ``Options`` model validates the rest of the entry. A generator whose ``needs_fetch``
        is False is expanded when the config is loaded; one that reads a repository is
        refreshed by the daemon every appset ``interval`` and on a push webhook.

    Not firstresult: results are merged; duplicate names are an error.
    """


@hookspec
def gitopsd_post_render(app: AppConfig, manifests: list[Manifest], options: Options | None) -> list[Manifest] | None:
    """Transform the rendered manifests of one application before they are applied.

    Called after every render (a cached render is transformed again, so hooks may depend
    on ``app``), for each plugin in turn: each implementation receives the output of the
    previous one. gitopsd's own labels and namespace defaulting are applied after all hooks:
    the Namespace gitopsd creates for the app (``create_namespace``) is not in ``manifests``.

    Args:
        app: The application's validated config (name, namespace, cluster, ...).
        manifests: The manifests so far. Treat them as read-only: return new dicts.
        options: This plugin's options for this app (``[plugins.NAME]`` merged with
            ``[apps.APP.plugins.NAME]``), or ``None`` if it declares none.

    Returns:
        The new list of manifests, or ``None`` to leave them unchanged. Raising an
        exception fails the render with a ``render-failed`` event naming the plugin.

    Not firstresult.
    """


@hookspec(firstresult=True)
def gitopsd_health(obj: Manifest, options: Options | None) -> HealthStatus | None:
    """Assess the health of a live object of a kind gitopsd has no rule for.

    Called for each live object of an application whose kind is not covered by the
    built-in rules (Deployment, StatefulSet, DaemonSet, Job, PVC, Service, CRD, Namespace,
    and objects with standard ``status.conditions``), each time health is evaluated, so it
    must be cheap and must not do I/O.

    Args:
        obj: The live object as a plain dict (read-only).
        options: This plugin's global options (``[plugins.NAME]``), or ``None`` if it
            declares none.

    Returns:
        A :class:`gitopsd.HealthStatus`, or ``None`` to let the next plugin decide; when
        no plugin decides, an object that exists is Healthy.

    firstresult: the first non-None result wins.
    """


@hookspec
def gitopsd_event(event: Event, options: Options | None) -> None:
    """Observe every event gitopsd emits (sync results, drift, health, reloads, ...).

    Called synchronously on the event loop for each event, before notifiers see it. It
    must return quickly and never block: to do I/O, hand the event to your own task.
    Exceptions are logged and otherwise ignored.

    Args:
        event: A frozen :class:`gitopsd.Event` subclass instance.
        options: This plugin's options for the event's app (``[plugins.NAME]`` merged with
            ``[apps.APP.plugins.NAME]``), the global ones for events of no app or of an app
            no longer configured, or ``None`` if the plugin declares none.

    Not firstresult; the return value is ignored.
    """
