"""The one hook a facebench plugin implements.

A plugin module (named by an entry point in the ``facebench`` group) defines::

    from facebench.hookspecs import hookimpl

    @hookimpl
    def facebench_register(registry):
        registry.add("loss", "myloss", build_my_loss, MyLossConfig)
"""
from __future__ import annotations

import pluggy

PROJECT = "facebench"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def facebench_register(registry) -> None:  # type: ignore[no-untyped-def]
    """Add this plugin's components with ``registry.add(kind, name, factory, schema)``."""
