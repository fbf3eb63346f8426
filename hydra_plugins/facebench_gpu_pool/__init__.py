"""facebench's Hydra launcher ``hydra/launcher=gpu_pool``: every job of a sweep in a fresh
process that sees one GPU of a pool (``launcher.GpuPoolLauncher``).

It lives in Hydra's ``hydra_plugins`` namespace package (no ``__init__.py`` there), which is
where Hydra looks for launchers; ``config`` registers the launcher's config when Hydra scans
the namespace.
"""
