"""Built-in facebench methods, installed as the ``facebench_plugins`` package."""
