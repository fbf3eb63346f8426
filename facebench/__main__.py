"""``python -m facebench``: one experiment (or a sweep with -m) through Hydra."""
from __future__ import annotations

import logging
import re
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from facebench.config import CONFIG_MODULE, register_core_configs, register_resolvers
from facebench.errors import FacebenchError
from facebench.registry import KINDS, Registry, RegistryError, get_registry

GROUP_KINDS = {group: kind for kind, group in KINDS.items()}

log = logging.getLogger("facebench")


def user_errors() -> tuple[type[BaseException], ...]:
    from facebench.protocols.lfw_files import ProtocolFileError

    return (FacebenchError, RegistryError, ProtocolFileError)


def task(cfg: DictConfig) -> dict:
    from facebench.run import execute

    hc = HydraConfig.get()
    try:
        record = execute(cfg, run_dir=Path(hc.runtime.output_dir))
    except user_errors() as exc:
        if hc.mode == RunMode.MULTIRUN:
            raise
        print(f"facebench: error: {exc}", file=sys.stderr)
        sys.exit(2)
    if record.get("status") in ("complete", "partial"):
        print(f"facebench: {cfg.method} on {cfg.protocol.name} ({record['regime']}): {record['headline']}")
        print(f"facebench: record: {Path(record['run_dir']) / 'metrics.json'}")
    else:
        print(f"facebench: {cfg.method}: configuration valid ({record['regime']}); nothing trained")
    return record


def check_component_overrides(argv: list[str], registry: Registry) -> None:
    """Name unknown components (with the closest registered name) before Hydra composes anything."""
    for arg in argv:
        match = re.fullmatch(r"[+~]?([a-z_]+)=(.+)", arg)
        if not match:
            continue
        kind = GROUP_KINDS.get(match.group(1))
        if kind is None:
            continue
        for name in match.group(2).split(","):
            registry.get(kind, name.strip())


def main() -> None:
    register_resolvers()
    try:
        check_component_overrides(sys.argv[1:], get_registry())
    except RegistryError as exc:
        print(f"facebench: error: {exc}", file=sys.stderr)
        sys.exit(2)
    register_core_configs()
    hydra.main(version_base="1.3", config_path=f"pkg://{CONFIG_MODULE}", config_name="config")(task)()


if __name__ == "__main__":
    main()
