"""``python -m facebench.analyze RUN_DIR [RUN_DIR ...] [analysis=[sparsity,occlusion]] [analysis.occlusion.fill=mean]``

Measures what a finished run's features are like (the DeepID2+ findings: sparsity, binary codes,
selectivity, occlusion robustness, sparsification; any registered analysis) from its checkpoints
and its own test-time features, and writes analysis.json, PNG plots and analysis.html into each
run's folder. Several runs: also a side-by-side page (``out=``) where findings are tested across
them, runs whose backbone learns nothing (pixels, LBP) serving as the floors.
"""
from __future__ import annotations

import gc
import logging
import sys
import time
from pathlib import Path
from typing import Any, Optional

from hydra import compose, initialize_config_module
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf

from facebench.analysis.loaded import AnalysedRun, check_run_dir
from facebench.analysis.report import read_analysis, reusable, write_comparison, write_run_analysis
from facebench.components import BuildContext
from facebench.config import ConfigError, register_resolvers, reject_code_targets
from facebench.errors import FacebenchError
from facebench.registry import Registry, get_registry

log = logging.getLogger("facebench.analysis")


def build_analyses(cfg: DictConfig, registry: Registry) -> dict[str, Any]:
    """Every chosen analysis built from its config (its checks run before any run is loaded)."""
    if not cfg.analysis:
        raise ConfigError("analysis=[]: choose at least one analysis (python -m facebench.plugins lists them)")
    built = {}
    for name, node in cfg.analysis.items():
        missing = OmegaConf.missing_keys(node)
        if missing:
            raise ConfigError(f"analysis={name} needs settings it has no default for: set {', '.join(sorted(missing))}")
        built[name] = registry.build("analysis", node, BuildContext())
    return built


def analyse_run(run_dir: Path, cfg: DictConfig, analyses: dict[str, Any]) -> dict[str, Any]:
    run = AnalysedRun(run_dir, cfg.checkpoint_dir, cfg.max_units)
    earlier = read_analysis(run.run_dir)
    for name, analysis in analyses.items():
        config = OmegaConf.to_container(cfg.analysis[name])
        if not cfg.rerun and reusable(earlier, run, name, config):
            log.info("%s: %s: the result in analysis.json is for this config and these units; kept (rerun=true "
                     "measures again)", run.label, name)
            continue
        log.info("%s: %s ...", run.label, name)
        began = time.perf_counter()
        result = analysis.analyse(run)
        seconds = time.perf_counter() - began
        log.info("%s: %s done in %.0f s", run.label, name, seconds)
        write_run_analysis(run, {name: (config, result, seconds)})  # each result kept as soon as it is measured
    document = write_run_analysis(run, {})
    print(f"facebench.analyze: {run.run_dir / 'analysis.html'}", flush=True)
    for name in analyses:
        for f in document["analyses"][name]["findings"]:
            verdict = {True: "holds", False: "does not hold"}.get(f["holds"], "cannot say")
            print(f"  {name}: {f['claim']}: {verdict} ({f['evidence']})", flush=True)
    return document


def main(argv: Optional[list[str]] = None) -> int:
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")
    register_resolvers()
    args = list(sys.argv[1:] if argv is None else argv)
    runs = [a for a in args if "=" not in a]
    overrides = [a for a in args if "=" in a]
    try:
        registry = get_registry()
        with initialize_config_module("facebench.analysis.conf", version_base="1.3"):
            cfg = compose("config", overrides=overrides)
        reject_code_targets(cfg)
        OmegaConf.resolve(cfg)
        run_dirs = [check_run_dir(r) for r in runs + list(cfg.runs)]
        if not run_dirs:
            raise ConfigError("name at least one run folder: python -m facebench.analyze RUN_DIR [RUN_DIR ...]")
        analyses = build_analyses(cfg, registry)
        documents = []
        for run_dir in run_dirs:
            documents.append(analyse_run(run_dir, cfg, analyses))
            gc.collect()
        if len(documents) > 1:
            labels = [d["label"] for d in documents]
            for d in documents:  # two runs of one method are told apart by their folders
                if labels.count(d["label"]) > 1:
                    d["label"] = f"{d['label']} ({Path(d['run']).name})"
            baselines = {d["label"] for d in documents if not d["trainable"]}
            compared = {name: analysis.compare({d["label"]: d["analyses"][name]["summary"] for d in documents}, baselines)
                        for name, analysis in analyses.items()}
            write_comparison(Path(cfg.out), documents, compared)
            print(f"facebench.analyze: side by side: {Path(cfg.out) / 'compare.html'}", flush=True)
    except (FacebenchError, HydraException, ValueError) as exc:
        print(f"facebench.analyze: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
