"""``python -m facebench.study [study=losses] [stage=all|search|final|presets|report] [only=[a,b]] [workers=N]``:
run a study's sweeps, each entry's in order and N entries at once (facebench.study.runner), each
sweep skipping what is already complete.

Overrides are Hydra's: ``study.search.trials=3``, ``study.launcher=joblib``,
``study.fixed=[...]``. Re-running the same command after an interruption continues: every
sweep passes ``reuse_complete=true`` (complete runs are skipped, the search's seeded sampler
re-asks the same trials and reads their scores back) and ``trainer.resume=true`` (a training cut
short continues from its checkpoint). The final stage refuses to start while a search it needs
is incomplete, so no entry is run at settings chosen from part of its trials; an entry whose
best trial lies at a bound of its space is searched again past it (facebench.study.rounds)
before its settings are chosen. ``dry_run=true`` prints the commands of the search's next
rounds or of the final runs instead of running them.
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
from facebench.study.history import best, save_plot, write_chosen, write_history
from facebench.study.rounds import EntrySearch, searches
from facebench.study.runner import SweepRunner
from facebench.study.skipping import pending
from facebench.study.spec import Study, Sweep

STAGES = ("search", "final", "presets", "report", "all")


def run_searches(study: Study, entries: list[str], runner: SweepRunner, dry_run: bool) -> None:
    """Every pending round of every entry, the entries' rounds side by side; a round decided by
    its predecessor's records starts once they are complete (a dry run prints the first rounds)."""
    launched: set[tuple[str, int]] = set()
    while True:
        pending = [(e, s.pending) for e, s in searches(study, entries).items() if s.pending is not None]
        if not pending:
            return
        again = [f"{e} (round {r.number} under {r.root})" for e, r in pending if (e, r.number) in launched]
        if again:
            raise FacebenchError(f"study {study.name}: a search round ran and still has fewer than "
                                 f"{int(study.cfg.search.trials)} trials with a record: {', '.join(again)}; read its "
                                 "failed records (metrics.json, error)")
        _launch(runner, [[study.search_sweep(entry, round_)] for entry, round_ in pending], dry_run)
        if dry_run:
            return
        launched.update((e, r.number) for e, r in pending)


def chosen_settings(study: Study, entries: list[str], searched: dict[str, EntrySearch]) -> dict[str, dict[str, Any]]:
    """Each of ``entries``' best trial over its search rounds (``searched``: every entry's, as
    ``rounds.searches`` read them); refuses an undecided search.

    chosen.json and the histories' plot cover every entry whose search is decided, whichever
    entries were asked for: a run with ``only=[...]`` must not shrink the study's published files."""
    objective = str(study.cfg.search.objective)
    chosen, histories = {}, {}
    for entry, search in searched.items():
        if search.pending is not None:
            if entry not in entries:
                continue
            raise FacebenchError(
                f"study {study.name}: the search of {entry} is not finished: round {search.pending.number} has fewer "
                f"than {int(study.cfg.search.trials)} complete trials under {search.pending.root}; run stage=search "
                "first (it continues where it stopped)"
            )
        write_history(study.search_root(entry), search.table)
        histories[entry] = search.table
        chosen[entry] = best(search.table, list(study.spaces[entry]), objective)
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
        run_searches(study, entries, runner, dry)
    if stage in ("final", "report", "all") and (stage == "final" or not dry):
        searched = searches(study, list(study.entries))
        if stage == "report":  # a report of a study under way: the entries whose search is decided
            entries = [e for e in entries if searched[e].pending is None]
        chosen = chosen_settings(study, entries, searched)
        if stage in ("final", "all"):
            _launch(runner, [study.baseline_sweeps(name) for name in study.baselines]
                    + [study.final_sweeps(e, chosen[e]) for e in entries], dry)
    if stage == "presets":
        _launch(runner, [[sweep] for sweep in study.preset_sweeps()], dry)
    if stage in ("report", "all") and not dry:
        from facebench.study.publish import write_leaderboard
        from facebench.study.report import write_report

        write_leaderboard(study, write_report(study, chosen, searched))


def _launch(runner: SweepRunner, chains: list[list[Sweep]], dry_run: bool) -> None:
    """Run the chains, less the sweeps whose one job is already complete (facebench.study.skipping),
    or with ``dry_run`` print their commands."""
    chains, done = pending(chains)
    if done:
        print(f"facebench.study: {len(done)} sweeps of one job not launched: its complete record exists", flush=True)
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
