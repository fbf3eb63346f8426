"""A study's config read into the command lines of its sweeps.

Every command is ``python -m facebench -m`` with the study's fixed overrides, the entry's,
``label=<entry>`` and ``reuse_complete=true``; the search adds hydra-optuna-sweeper's settings
and the search space, the final runs the chosen values, the seeds and (``final.folds``) the
fold of each job. The verifier is its own sweep after the first: a second verifier re-scores
the first one's checkpoints (the verifier is not part of a checkpoint's key) instead of
training again, whatever the launcher runs at once.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from omegaconf import DictConfig, OmegaConf

from facebench.config import ConfigError, split_override
from facebench.registry import Registry
from facebench.study.findings import Claim
from facebench.study.rounds import Round


@dataclass(frozen=True)
class Sweep:
    """One ``python -m facebench -m`` invocation and what it is for."""

    stage: str
    entry: str
    verifier: str
    results_root: Path
    argv: list[str]

    def command(self) -> list[str]:
        return [sys.executable, "-m", "facebench", "-m", *self.argv]


def _overrides(node: Any, key: str) -> list[str]:
    if node is None:
        return []
    if not OmegaConf.is_list(node) or not all(isinstance(v, str) for v in node):
        raise ConfigError(f"study.{key}: give a list of override strings (key=value)")
    return [str(v) for v in node]


def _claims(node: Any, entries: dict[str, list[str]]) -> list[Claim]:
    """``report.claims`` read and checked: each names two of the study's entries, what is
    claimed of them (``beats`` or ``ties``) and who claims it."""
    claims = []
    for index, item in enumerate(node or []):
        where = f"study.report.claims[{index}]"
        kinds = [k for k in ("beats", "ties") if OmegaConf.is_dict(item) and k in item]
        if not OmegaConf.is_dict(item) or len(kinds) != 1 or not item.get("entry") or not item.get("source"):
            raise ConfigError(f"{where}: give {{entry: <entry>, beats: <entry>, source: <who claims it>}} "
                              "(or ties: <entry> for a claim that the two are as good as each other)")
        kind = kinds[0]
        for key in ("entry", kind):
            if str(item[key]) not in entries:
                raise ConfigError(f"{where}.{key}: {item[key]!r} is not an entry of the study; "
                                  f"name one of {sorted(entries)}")
        if str(item.entry) == str(item[kind]):
            raise ConfigError(f"{where}: a claim compares two different entries")
        claims.append(Claim(str(item.entry), kind, str(item[kind]), str(item.source)))
    return claims


def _key(override: str) -> str:
    return split_override(override)[0]


def merge(base: list[str], extra: list[str]) -> list[str]:
    """``base`` then ``extra``, where an override in ``extra`` replaces ``base``'s of the same
    key, and choosing a group (``backbone=pixels``) drops ``base``'s settings of that group
    (``backbone.batchnorm=true`` belongs to the trunk it replaces)."""
    keys = {_key(o) for o in extra}
    groups = {_key(o) for o in extra if "." not in _key(o)}
    kept = [o for o in base if _key(o) not in keys and _key(o).split(".", 1)[0] not in groups]
    return kept + extra


class Study:
    """The study config ``cfg`` (the ``study`` node), checked against the registry."""

    def __init__(self, cfg: DictConfig, registry: Registry) -> None:
        self.cfg = cfg
        self.name = str(cfg.name)
        self.root = Path(str(cfg.root))
        self.data = [f"data.root={cfg.data_root}"] if cfg.get("data_root") else []
        self.fixed = _overrides(cfg.fixed, "fixed") + self.data
        self.entries = {str(k): _overrides(v, f"entries.{k}") for k, v in cfg.entries.items()}
        self.baselines = {str(k): _overrides(v, f"baselines.{k}") for k, v in (cfg.baselines or {}).items()}
        self.verifiers = {str(k): _overrides(v, f"verifiers.{k}") for k, v in cfg.verifiers.items()}
        if not self.entries or not self.verifiers:
            raise ConfigError(f"study {self.name}: needs at least one entry and one verifier")
        self.spaces = {name: self._space(name, registry) for name in self.entries}
        self.claims = _claims((cfg.get("report") or {}).get("claims"), self.entries)

    def _loss(self, entry: str) -> str:
        chosen = [o.split("=", 1)[1] for o in self.fixed + self.entries[entry] if o.startswith("loss=")]
        if not chosen:
            raise ConfigError(f"study.entries.{entry}: name its loss (loss=<name>)")
        return chosen[-1]

    def _space(self, entry: str, registry: Registry) -> dict[str, str]:
        """The entry's search space: the study's learning rate and what its loss declares."""
        loss = registry.get("loss", self._loss(entry))
        return {"trainer.lr": str(self.cfg.lr), **{f"loss.{k}": v for k, v in loss.search_space.items()}}

    def _placement(self, root: Path) -> list[str]:
        """Where a sweep's records go and how its jobs run: complete runs skipped."""
        return ["reuse_complete=true", f"results_root={root}", f"hydra/launcher={self.cfg.launcher}"]

    def _common(self, entry: str, overrides: list[str], root: Path) -> list[str]:
        return [*merge(self.fixed, overrides), f"label={entry}", *self._placement(root)]

    def search_root(self, entry: str) -> Path:
        return self.root / "search" / entry

    def search_sweep(self, entry: str, round_: Optional[Round] = None) -> Sweep:
        """A round of the entry's search (default: the first, on the declared space;
        facebench.study.rounds): ``search.trials`` TPE trials on the tuning protocol, scored by
        the first verifier, maximising ``search.objective``."""
        round_ = round_ or Round(0, self.search_root(entry), self.spaces[entry])
        search = self.cfg.search
        verifier = next(iter(self.verifiers))
        root = round_.root
        study_name = f"{self.name}-{entry}" + (f"-round-{round_.number}" if round_.number else "")
        argv = [
            *self._common(entry, self.entries[entry], root),
            *_overrides(search.protocol, "search.protocol"),
            *self.verifiers[verifier],
            f"seed={int(search.seed)}",
            f"objective={search.objective}",
            f"objective_when_diverged={search.diverged_score}",
            "hydra/sweeper=optuna",
            "hydra/sweeper/sampler=tpe",
            "hydra.sweeper.direction=maximize",
            f"hydra.sweeper.study_name={study_name}",
            f"hydra.sweeper.n_trials={int(search.trials)}",
            "hydra.sweeper.n_jobs=1",
            f"hydra.sweeper.sampler.seed={int(search.seed)}",
            f"hydra.sweeper.sampler.n_startup_trials={int(search.startup_trials)}",
            # a trial that fails otherwise (a crash) is a failed trial to Optuna, and the search goes on
            "hydra.sweeper.max_failure_rate=1.0",
            *[f"{key}={expression}" for key, expression in round_.space.items()],
        ]
        return Sweep("search", entry, verifier, root, argv)

    def final_sweeps(self, entry: str, chosen: dict[str, Any]) -> list[Sweep]:
        """The reported runs of ``entry`` at its ``chosen`` values: every seed, each verifier after
        the first re-scoring the first one's checkpoints. With ``final.folds`` one sweep per
        (seed, fold, verifier), a fold's verifiers back to back; without, one per verifier over
        every seed and fold."""
        root = self.root / "final"
        values = [f"{key}={chosen[key]!r}" if isinstance(chosen[key], str) else f"{key}={chosen[key]}" for key in chosen]
        common = [*self._common(entry, self.entries[entry], root), *_overrides(self.cfg.final.protocol, "final.protocol"),
                  *values]
        seeds = [int(s) for s in self.cfg.final.seeds]
        folds = self._final_folds()
        if not folds:
            return [Sweep("final", entry, verifier, root, [*common, *overrides, f"seed={','.join(map(str, seeds))}"])
                    for verifier, overrides in self.verifiers.items()]
        return [
            Sweep("final", entry, verifier, root, [*common, *overrides, f"protocol.folds=[{fold}]", f"seed={seed}"])
            for seed in seeds for fold in folds for verifier, overrides in self.verifiers.items()
        ]

    def _final_folds(self) -> list[int]:
        """``final.folds``: the folds run one job each (empty: one job per seed over them all)."""
        folds = self.cfg.final.get("folds")
        if folds is None:
            return []
        if not OmegaConf.is_list(folds) or not folds or not all(isinstance(f, int) and f >= 1 for f in folds):
            raise ConfigError(f"study.final.folds={folds}: give the 1-based folds as a list (e.g. [1,2,3]), or null "
                              "for one job per seed over every fold")
        return [int(f) for f in folds]

    def preset_sweeps(self) -> list[Sweep]:
        """The reproduction presets (``report.presets``): each method with its own net and recipe
        (``+method=<name>``), at the one budget ``report.presets.overrides`` states, one sweep per
        method under ``report.presets.root``. Nothing of the study's fixed settings applies."""
        presets = self.cfg.report.get("presets") or {}
        methods = _overrides(presets.get("methods"), "report.presets.methods")
        if not methods or not presets.get("root"):
            raise ConfigError(f"study {self.name}: report.presets needs a root and a list of methods to run")
        root = Path(str(presets.root))
        overrides = _overrides(presets.get("overrides"), "report.presets.overrides")
        return [
            Sweep("presets", method, "its own", root, [
                f"+method={method}", *overrides, *self.data, *self._placement(root),
            ])
            for method in methods
        ]

    def baseline_sweeps(self, name: str) -> list[Sweep]:
        """A no-training floor on the final protocol, scored by every verifier (one seed: it
        has nothing random), in one job over the final runs' folds."""
        root = self.root / "baselines"
        chosen_folds = self._final_folds()
        folds = [f"protocol.folds=[{','.join(map(str, chosen_folds))}]"] if chosen_folds else []
        return [
            Sweep("baseline", name, verifier, root, [
                *self._common(name, self.baselines[name], root), *_overrides(self.cfg.final.protocol, "final.protocol"),
                *overrides, *folds, "seed=0",
            ])
            for verifier, overrides in self.verifiers.items()
        ]
