"""``python -m facebench.study [study=losses] [stage=all|search|final|presets|report] [only=[a,b]] [workers=N]``:
run a study's sweeps, each entry's in order and N entries at once (facebench.study.runner), each
sweep skipping what is already complete.

Overrides are Hydra's: ``study.search.trials=3``, ``study.launcher=joblib``,
``study.fixed=[...]``. Re-running the same command after an interruption continues: every
sweep passes ``reuse_complete=true`` (complete runs are skipped, the search's seeded sampler
re-asks the same trials and reads their scores back) and ``trainer.resume=true`` (a training cut
short continues from its checkpoint). The final stage refuses to start while a search it needs
is incomplete, so no entry is run at settings chosen from part of its trials.
"""
from __future__ import annotations

import sys
from typing import Any, Optional

from hydra import compose, initialize_config_module
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf

from facebench.config import ConfigError, register_resolvers
from facebench.errors import FacebenchError
from facebench.registry import get_registry
from facebench.study.history import best, save_plot, trials, write_chosen, write_history
from facebench.study.runner import SweepRunner
from facebench.study.spec import Study, Sweep

STAGES = ("search", "final", "presets", "report", "all")


def chosen_settings(study: Study, entries: list[str]) -> dict[str, dict[str, Any]]:
    """Each of ``entries``' best trial, from its search records; refuses an incomplete search.

    chosen.json and the histories' plot cover every entry whose search is complete, whichever
    entries were asked for: a run with ``only=[...]`` must not shrink the study's published files."""
    objective = str(study.cfg.search.objective)
    wanted = int(study.cfg.search.trials)
    chosen, histories = {}, {}
    for entry in study.entries:
        keys = list(study.spaces[entry])
        table = trials(study.search_root(entry), keys, objective)
        if len(table) < wanted:
            if entry not in entries:
                continue
            raise FacebenchError(
                f"study {study.name}: the search of {entry} has {len(table)} of {wanted} complete trials under "
                f"{study.search_root(entry)}; run stage=search first (it continues where it stopped)"
            )
        write_history(study.search_root(entry), table)
        histories[entry] = table
        chosen[entry] = best(table.head(wanted), keys, objective)
    if histories:
        save_plot(study.root / "search" / "history.png", histories, objective)
        write_chosen(study.root / "search" / "chosen.json", chosen)
    return {entry: chosen[entry] for entry in entries}


def run_study(cfg: DictConfig) -> None:
    stage = str(cfg.stage)
    if stage not in STAGES:
        raise ConfigError(f"stage={stage}: use one of {', '.join(STAGES)}")
    study = Study(cfg.study, get_registry())
    entries = [str(e) for e in cfg.only] or list(study.entries)
    unknown = [e for e in entries if e not in study.entries]
    if unknown:
        raise ConfigError(f"only={unknown}: not entries of study {study.name} ({', '.join(study.entries)})")
    runner = SweepRunner(int(cfg.workers))
    dry = bool(cfg.dry_run)
    if stage in ("search", "all"):
        _launch(runner, [[study.search_sweep(e)] for e in entries], dry)
    if stage in ("final", "report", "all") and not dry:
        chosen = chosen_settings(study, entries)
        if stage in ("final", "all"):
            runner.run([study.baseline_sweeps(name) for name in study.baselines]
                       + [study.final_sweeps(e, chosen[e]) for e in entries])
    if stage == "presets":
        _launch(runner, [[sweep] for sweep in study.preset_sweeps()], dry)
    if stage in ("report", "all") and not dry:
        from facebench.study.publish import write_leaderboard
        from facebench.study.report import write_report

        write_leaderboard(study, write_report(study, chosen))


def _launch(runner: SweepRunner, chains: list[list[Sweep]], dry_run: bool) -> None:
    """Run the chains, or with ``dry_run`` print their commands."""
    if not dry_run:
        runner.run(chains)
        return
    for chain in chains:
        for sweep in chain:
            print(f"facebench.study: {sweep.stage} {sweep.entry}: {' '.join(sweep.command()[1:])}")


def main(argv: Optional[list[str]] = None) -> int:
    register_resolvers()
    overrides = list(sys.argv[1:] if argv is None else argv)
    try:
        with initialize_config_module("facebench.study.conf", version_base="1.3"):
            cfg = compose("config", overrides=overrides)
        OmegaConf.resolve(cfg)
        run_study(cfg)
    except (FacebenchError, HydraException) as exc:
        print(f"facebench.study: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
