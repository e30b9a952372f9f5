"""gitopsd's built-in plugins. Each module registers itself through the ``gitopsd``
entry-point group and uses only the public API of :mod:`gitopsd`, like any third-party plugin."""
