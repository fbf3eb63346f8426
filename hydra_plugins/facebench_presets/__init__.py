"""Presets from plugins: every package a facebench plugin offers with ``registry.add_presets``
joins Hydra's config search path, so ``+method=<name>`` finds a preset shipped by any installed
plugin exactly as it finds a built-in one.

Hydra discovers search-path plugins by scanning its ``hydra_plugins`` namespace package, for the
command line and the compose API alike.
"""
from __future__ import annotations

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin


class FacebenchPresets(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        from facebench.registry import get_registry

        for preset in get_registry().preset_packages:
            search_path.append(provider=preset.provider, path=f"pkg://{preset.package}")
