"""Workload ``study_job``: one job of the loss study end to end against a bare script doing
the same, and what feature extraction costs against training.

Rows:
- ``one study job vs bare``: ``python -m facebench`` with the ``losses`` study's fixed settings
  (DeepID2 net with BatchNorm, SGD with a cosine schedule, flips and shifts, flip-concatenated
  features), ``loss=softmax``, LFW View 2 fold 1, Joint Bayesian on PCA 160, against
  :mod:`facebench_plugins.deepid2.bench.bare_study_job` (the same training, extraction, fit and
  scoring as a plain script). Both are subprocesses started the same way and read the same
  decoded-image cache, warmed first. Ours runs with ``evaluation.curve_holdout=0``: the
  learning curve's evaluations are study work, not overhead, and the bare script has none.
  Needs the shared LFW folder; skipped under ``--quick`` (two trainings per repeat).
- ``extraction vs training``: network inputs per second of ``extract_features`` (flip-concat:
  each face and its mirror are inputs) against ``facebench.train``'s images per second, same
  net, batch 128 (the study's), on random faces.
"""
from __future__ import annotations

import copy
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from facebench.bench.report import Row, Target, skipped
from facebench.bench.runner import BenchContext
from facebench.bench.timing import measure, watch_load
from facebench.components import BuildContext
from facebench.config import TrainerConfig
from facebench.features import extract_features
from facebench.registry import get_registry
from facebench.train import train
from facebench_plugins.deepid2.bench.end_to_end import last_error
from facebench_plugins.deepid2.bench.training import IDENTITIES, faces

SHAPE = (3, 55, 47)
JOB_STEPS = 300
TIMEOUT = 1800


def study_fixed() -> list[str]:
    """The ``losses`` study's fixed overrides, as its config states them."""
    from hydra import compose, initialize_config_module

    from facebench.config import register_resolvers
    from facebench.study.spec import Study

    register_resolvers()
    with initialize_config_module("facebench.study.conf", version_base="1.3"):
        cfg = compose("config")
    return Study(cfg.study, get_registry()).fixed


def _job_rows(ctx: BenchContext) -> list[Row]:
    case = "one study job vs bare"
    target = Target("<=", 1.15)
    if ctx.quick:
        return [skipped("study_job", case, "skipped under --quick (two trainings per repeat)", target)]
    shared = ctx.shared_data()
    lfw = shared / "lfw" if shared else None
    if lfw is None or not (lfw / "pairs.txt").is_file():
        return [skipped("study_job", case, "needs the shared LFW folder (pairs.txt, people.txt, images)", target)]
    cache = os.environ.get("FACEBENCH_CACHE", str(Path.home() / ".cache" / "facebench"))
    from facebench.protocols.lfw import LfwProtocol, LfwProtocolConfig

    LfwProtocol(LfwProtocolConfig(root=str(lfw)), view=2).load(SHAPE, cache, "fail")  # warm the decoded cache
    with tempfile.TemporaryDirectory(prefix="facebench-bench-job-") as tmp:
        ours = [sys.executable, "-m", "facebench", *[o for o in study_fixed() if not o.startswith("data.root=")],
                f"data.root={lfw}", "loss=softmax", "protocol=lfw_view2", "protocol.folds=[1]",
                f"trainer.steps={JOB_STEPS}", "trainer.lr=0.1", "trainer.resume=false", "evaluation.curve_holdout=0",
                "verifier=joint_bayesian", "verifier.pca_dim=160", f"results_root={tmp}/results", f"cache_dir={cache}",
                f"device={ctx.device.type}"]
        bare = [sys.executable, "-m", "facebench_plugins.deepid2.bench.bare_study_job", "--lfw", str(lfw),
                "--cache", cache, "--steps", str(JOB_STEPS)]
        env = {**os.environ, "WANDB_MODE": "disabled"}

        def call(command: list[str]) -> None:
            proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=TIMEOUT)
            if proc.returncode != 0:
                raise RuntimeError(f"{' '.join(command[1:4])} ... exited with {proc.returncode}: {last_error(proc.stderr)}")

        with watch_load() as load:
            t = measure({"ours": lambda: call(ours), "bare": lambda: call(bare)}, repeats=2, warmup=0)
    return [Row("study_job", case, t["ours"], t["bare"],
                "bare_study_job: the same training, extraction, Joint Bayesian fit and scoring as a plain script",
                t["ours"].median / t["bare"].median, "ours / bare wall time", target, load,
                notes=[f"LFW View 2 fold 1, loss=softmax, {JOB_STEPS} steps of 128, each side a subprocess, timed twice"],
                details={"steps": JOB_STEPS, "ours_command": ours[1:], "bare_command": bare[1:]})]


def _extraction_row(ctx: BenchContext) -> Row:
    registry = get_registry()
    cfg = registry.get("backbone", "deepid2").schema(batchnorm=True)
    template = registry.build("backbone", cfg, BuildContext(num_classes=IDENTITIES, input_shape=SHAPE))
    data = faces(SHAPE, ctx.seed)
    loss = registry.build("loss", registry.get("loss", "softmax").schema(),
                          BuildContext(num_classes=IDENTITIES, feature_dim=template.feature_dim, input_shape=SHAPE))
    steps = ctx.pick(30, 6)
    trainer = TrainerConfig(steps=steps, batch_size=128)
    net = copy.deepcopy(template)
    images = data.images[: ctx.pick(4096, 1024)]
    with watch_load() as load:
        t = measure({"extract": lambda: extract_features(net, images, "concat", 128, ctx.device),
                     "train": lambda: train(copy.deepcopy(template), copy.deepcopy(loss), data, trainer, ctx.device,
                                            ctx.seed)},
                    repeats=ctx.pick(3, 2), warmup=1, sync=ctx.sync)
    extract_rate = t["extract"].rate(2 * len(images), "img/s")
    train_rate = t["train"].rate(steps * 128, "img/s")
    return Row("study_job", "extraction vs training", extract_rate, train_rate,
               "facebench.train images per second, same net and batch",
               extract_rate.median / train_rate.median, "extraction / training network inputs per second",
               Target(">=", 3.0), load,
               notes=[f"extraction: {len(images)} faces + mirrors (flip=concat) in batches of 128; training: "
                      f"{steps} steps of 128, softmax"],
               details={"faces": len(images), "train_steps": steps, "threads": torch.get_num_threads(),
                        "random_faces": True})


def run(ctx: BenchContext) -> list[Row]:
    return [_extraction_row(ctx), *_job_rows(ctx)]
