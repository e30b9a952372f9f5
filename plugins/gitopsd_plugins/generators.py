"""Built-in appset generators (``list``, ``clusters``, ``git-directories``, ``git-files``, ``matrix``): the entry point.

The generators and their options models live in :mod:`gitopsd_plugins._generators`, imported
by the hook below when a generator type is first looked up (the plugin manager asks on first
use of ``types.generators``: an appset in the config, ``gitopsd plugins``, the docs). A daemon
without appsets never builds those classes (about 3 % of its start at 1000 apps).
"""

from __future__ import annotations

import gitopsd


@gitopsd.hookimpl
def gitopsd_generator_types() -> dict[str, type[gitopsd.Generator]]:
    from ._generators import GENERATOR_TYPES

    return dict(GENERATOR_TYPES)
