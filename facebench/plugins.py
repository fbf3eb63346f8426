"""``python -m facebench.plugins``: every registered component by kind, who provides it, and
every plugin that failed to load with its error."""
from __future__ import annotations

import argparse
import sys

from facebench.registry import KINDS, build_registry


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m facebench.plugins", description=__doc__)
    parser.add_argument("--traceback", action="store_true", help="show full tracebacks of failed plugins")
    args = parser.parse_args(argv)
    registry = build_registry()
    for kind, group in KINDS.items():
        print(f"{kind} (config group '{group}'):")
        for name in registry.names(kind):
            comp = registry.components[kind][name]
            print(f"  {name:<22} {comp.provider}")
    if registry.failures:
        print("plugins that failed to load:")
        for f in registry.failures:
            print(f"  {f.name} ({f.provider}): {f.error}")
            if args.traceback:
                print(f.detail)
    return 0


if __name__ == "__main__":
    sys.exit(main())
