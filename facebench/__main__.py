"""``python -m facebench``: one experiment (or a sweep with -m) through Hydra."""
from __future__ import annotations

import logging
import re
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from facebench import distributed
from facebench.config import (
    CONFIG_MODULE, check_moved_keys, check_writable, register_core_configs, register_resolvers, reject_code_targets,
)
from facebench.errors import FacebenchError
from facebench.labels import run_label
from facebench.registry import RUN_KINDS, Registry, get_registry
from facebench.results import diverged

GROUP_KINDS = {group: kind for kind, group in RUN_KINDS.items()}

log = logging.getLogger("facebench")


def task(cfg: DictConfig) -> dict:
    """One run. In a multirun a failed job returns its failed record instead of raising, so
    the other jobs go on and ``facebench.sweeps.SweepSummary`` can report it; an interrupted
    one ends the whole sweep with 128 + signal, starting no further job."""
    from facebench import sweeps
    from facebench.run import execute

    from facebench.train import TrainingInterrupted

    hc = HydraConfig.get()
    multirun = hc.mode == RunMode.MULTIRUN
    run_dir = Path(hc.runtime.output_dir)
    if multirun:
        sweeps.isolate_job(hc)
    try:
        with distributed.process_group(cfg.device) as launch:
            if launch is not None and not launch.is_main:
                log.setLevel(logging.WARNING)  # rank 0 speaks for the run
            record = execute(cfg, run_dir=run_dir)
    except TrainingInterrupted as exc:
        # Exit rather than raise: Hydra's launchers store a job's exception and start the next
        # job, so a sweep stopped by its scheduler or by the study runner would train on.
        print(f"facebench: interrupted: {exc}", file=sys.stderr)
        if multirun:
            print(f"facebench: the sweep stops with {run_label(cfg)}; the same command with trainer.resume=true "
                  "and reuse_complete=true continues it", file=sys.stderr)
        sys.exit(128 + (exc.signum or signal.SIGINT))
    except FacebenchError as exc:
        if multirun:
            return objective_value(cfg, sweeps.record_failure(cfg, run_dir, exc, show_traceback=False))
        print(f"facebench: error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        # outside training (decoding, evaluation): nothing to resume from, the record says failed
        if hc.mode == RunMode.MULTIRUN:
            raise
        print(f"facebench: interrupted before {run_label(cfg)} finished; its record is marked failed", file=sys.stderr)
        sys.exit(128 + signal.SIGINT)
    except Exception as exc:
        if not multirun:
            raise
        return objective_value(cfg, sweeps.record_failure(cfg, run_dir, exc, show_traceback=True))
    if launch is not None and not launch.is_main:
        return record
    if record.get("reused"):
        print(f"facebench: {record['method']}: complete record reused (reuse_complete): {record['run_dir']}")
        sweeps.drop_empty_job_dir(run_dir)
    elif record.get("status") in ("complete", "partial"):
        print(f"facebench: {record['method']} on {cfg.protocol.name} ({record['regime']}): {record['headline']}")
        print(f"facebench: record: {Path(record['run_dir']) / 'metrics.json'}")
    else:
        print(f"facebench: {run_label(cfg)}: configuration valid ({record['regime']}); nothing trained")
    return objective_value(cfg, record)


def objective_value(cfg: DictConfig, record: dict) -> Any:
    """The record, or with ``objective=<metric>`` that metric as a float. A run whose training
    diverged returns ``objective_when_diverged`` where set; a run without the metric otherwise
    returns None: hydra-optuna-sweeper then tells Optuna the trial failed and asks the next one.
    Not NaN: the sweeper hands a NaN back with the failure, which Optuna refuses, and the whole
    search stops."""
    if not cfg.objective:
        return record
    if diverged(record) and cfg.get("objective_when_diverged") is not None:
        return float(cfg.objective_when_diverged)
    value = record.get("metrics", {}).get(cfg.objective)
    return float(value) if isinstance(value, (int, float)) else None


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


def check_code_targets(argv: list[str]) -> None:
    """Refuse ``_target_`` (and Hydra's other instantiation keys) in any override, as its key or
    nested in its value, before plugins load or Hydra creates a run directory.

    ``check_composed_config`` then covers what presets and config files add. Overrides Hydra
    cannot parse are left to Hydra to report.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    parser = OverridesParser.create()
    for arg in argv:
        try:
            (override,) = parser.parse_overrides([arg])
        except HydraException:
            continue
        if override.is_delete():
            continue
        if override.is_sweep_override() and not (override.is_choice_sweep() or override.is_range_sweep()):
            continue  # interval(...) for optimising sweepers: numbers, no code
        values = list(override.sweep_iterator()) if override.is_sweep_override() else [override.value()]
        for value in values:
            for part in reversed(override.key_or_group.split(".")):
                value = {part: value}
            reject_code_targets(value)


#: Hydra flags that take the next argument as their value.
FLAGS_WITH_VALUE = ("-cp", "--config-path", "-cn", "--config-name", "-cd", "--config-dir", "-c", "--cfg", "-p",
                    "--package", "--experimental-rerun")


def check_composed_config(argv: list[str]) -> None:
    """Compose the config as Hydra is about to (presets, config files, ``--config-dir``) and refuse
    code targets in it, Hydra's own node included: Hydra instantiates ``hydra.callbacks`` before
    any facebench code runs. Then checks that the results and cache folders can be written
    (Hydra makes the run folder before facebench runs). Sweep overrides are left out as Hydra leaves them out of the config
    it builds callbacks from; each job's own config is checked again by ``plan_run``. A config
    that does not compose is left to Hydra to report."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    from facebench.config import compose

    parser = OverridesParser.create()
    overrides: list[str] = []
    args = iter(argv)
    for arg in args:
        if arg in ("-cd", "--config-dir"):
            overrides.append(f"hydra.searchpath=[file://{Path(next(args, '.')).resolve()}]")
        elif arg in FLAGS_WITH_VALUE:
            next(args, None)
        elif not arg.startswith("-"):
            try:
                (override,) = parser.parse_overrides([arg])
            except HydraException:
                return
            if not override.is_sweep_override():
                overrides.append(arg)
    try:
        cfg = compose(overrides)
    except HydraException:
        return
    reject_code_targets(cfg)
    check_writable(cfg)


def main() -> None:
    register_resolvers()
    try:
        check_moved_keys(sys.argv[1:])
        check_code_targets(sys.argv[1:])
        check_component_overrides(sys.argv[1:], get_registry())
        check_composed_config(sys.argv[1:])
    except FacebenchError as exc:
        print(f"facebench: error: {exc}", file=sys.stderr)
        sys.exit(2)
    register_core_configs()
    launch = distributed.launch_from_env()
    if launch is not None and {"-m", "--multirun"} & set(sys.argv[1:]):
        print("facebench: error: torchrun starts one run over several processes; run sweeps without torchrun", file=sys.stderr)
        sys.exit(2)
    scratch = None
    if launch is not None and not launch.is_main:
        scratch = Path(tempfile.mkdtemp(prefix=f"facebench-rank{launch.rank}-"))
        sys.argv += distributed.follower_overrides(scratch)
    try:
        hydra.main(version_base="1.3", config_path=f"pkg://{CONFIG_MODULE}", config_name="config")(task)()
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
