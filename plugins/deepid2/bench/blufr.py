"""Workload ``blufr``: scoring BLUFR trials with Joint Bayesian on 180-dim features.

One trial is what :meth:`BlufrProtocol.evaluate_unit` does: fit the verifier on the trial's
training images, score every test image against every other (about 52 million pairs with
the official config), read VR at FAR = 0.1% and DIR at rank 1, FAR = 1% (probes against the
gallery). Trials and labels come from the official ``blufr_lfw_config.mat`` when the shared
LFW folder has it, else from LFW-like synthetic identities with a BLUFR-shaped split.
Features are seeded random with identity structure (:mod:`facebench_plugins.deepid2.bench.synthetic_features`).

Baseline (full runs only, trial 1, once): what a straightforward evaluation does with the
same fitted verifier: the whole test x test score matrix in one call, its upper triangle
through boolean masks, ``sklearn.metrics.roc_curve`` over all pairs (it sorts all of them)
for VR, and a Python loop over probes for DIR. Its VR and DIR equal ours (recorded). It
peaks near 5 GB (most of it inside ``roc_curve``) and takes tens of seconds, so ``--quick``
leaves it out, and so does a machine with less than BASELINE_MEMORY_GB available; no
target depends on it.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Optional

import numpy as np
from sklearn.metrics import roc_curve

from facebench.bench.report import Row, Target, skipped
from facebench.bench.runner import BenchContext
from facebench_plugins.deepid2.bench.synthetic_features import identity_features, lfw_like_counts
from facebench.bench.timing import Stats, measure, watch_load
from facebench.components import FaceData, Verifier
from facebench.protocols.blufr import (
    CONFIG_FILE,
    DIR_FAR,
    VR_FAR,
    BlufrBenchmark,
    BlufrProtocol,
    BlufrProtocolConfig,
    BlufrTrial,
    read_blufr_config,
)

DIM = 180
TRIALS = 10
#: Raw pixels of the study's 55 x 47 RGB input, against the study's 160-d feature, both scored
#: by Joint Bayesian on PCA 160 (the study's verifier).
PIXEL_DIM = 55 * 47 * 3
FEATURE_DIM = 160
#: BLUFR's split sizes: about 3,000 training images per trial and a 1,000-image gallery.
TRAIN_IMAGES = 3000
GALLERY = 1000
#: Memory the baseline needs free (it peaked at 4.6 GB on the official trial 1).
BASELINE_MEMORY_GB = 6.0
#: Within-identity spread of the features: VR@0.1% then lands around 0.8-0.9.
NOISE = 1.1


def _faces(labels: np.ndarray) -> FaceData:
    """Labels only: scoring never looks at pixels, so the images are 1x1 placeholders."""
    n_ids = int(labels.max()) + 1
    return FaceData(np.zeros((len(labels), 1, 1, 1), np.uint8), labels, [f"id{k}" for k in range(n_ids)],
                    [f"img{i}" for i in range(len(labels))])


def official_benchmark(path: Path) -> BlufrBenchmark:
    config = read_blufr_config(path)
    _, labels = np.unique(config.labels, return_inverse=True)
    trials = [BlufrTrial(f"trial{t + 1}", config.train[t], config.test[t], config.gallery[t], config.probe[t])
              for t in range(len(config.train))]
    return BlufrBenchmark("blufr", _faces(labels), trials, {"source": str(path)})


def synthetic_benchmark(rng: np.random.Generator) -> BlufrBenchmark:
    """LFW-like identities; per trial, people shuffled into training (until TRAIN_IMAGES) and
    test; the gallery is one image of each of GALLERY test people, the probes the rest."""
    counts = lfw_like_counts(rng)
    labels = np.repeat(np.arange(len(counts)), counts)
    start = np.concatenate(([0], np.cumsum(counts)[:-1]))
    trials = []
    for t in range(TRIALS):
        order = rng.permutation(len(counts))
        n_train = int(np.searchsorted(np.cumsum(counts[order]), TRAIN_IMAGES)) + 1
        train_people, test_people = order[:n_train], order[n_train:]
        train = np.flatnonzero(np.isin(labels, train_people))
        test = np.flatnonzero(np.isin(labels, test_people))
        gallery = start[rng.choice(test_people, GALLERY, replace=False)]
        probe = np.setdiff1d(test, gallery)
        trials.append(BlufrTrial(f"trial{t + 1}", train, test, gallery, probe))
    return BlufrBenchmark("blufr", _faces(labels), trials, {"source": "synthetic LFW-like identities"})


def straightforward_trial(
    verifier: Verifier, features: np.ndarray, labels: np.ndarray, trial: BlufrTrial
) -> dict[str, float]:
    """The baseline evaluation of one trial (see the module docstring); returns VR and DIR."""
    verifier.fit(features[trial.train], labels[trial.train])
    test, y = features[trial.test], labels[trial.test]
    scores = verifier.score_matrix(test, test)
    upper = np.triu(np.ones(scores.shape, dtype=bool), k=1)
    pair_scores, pair_same = scores[upper], (y[:, None] == y[None, :])[upper]
    del scores, upper  # the full matrix is not needed for the ROC: free it before sorting
    fpr, tpr, _ = roc_curve(pair_same, pair_scores)
    del pair_scores, pair_same
    vr = float(tpr[np.searchsorted(fpr, VR_FAR, side="right") - 1])
    probe_gallery = verifier.score_matrix(features[trial.probe], features[trial.gallery])
    gallery_labels = labels[trial.gallery]
    in_gallery = set(gallery_labels.tolist())
    impostor_best, genuine = [], []
    for row, label in zip(probe_gallery, labels[trial.probe]):
        best = int(np.argmax(row))
        if label in in_gallery:
            genuine.append((row[best], gallery_labels[best] == label))
        else:
            impostor_best.append(row[best])
    impostor_best.sort(reverse=True)
    threshold = impostor_best[int(DIR_FAR * len(impostor_best))]
    dir_ = sum(1 for score, hit in genuine if hit and score > threshold) / len(genuine)
    return {"vr": vr, "dir": dir_}


def _pixel_row(ctx: BenchContext, bench: BlufrBenchmark, protocol: BlufrProtocol, rng: np.random.Generator) -> Row:
    """Trial 1 on raw-pixel-sized features (PIXEL_DIM) against the study's FEATURE_DIM, both
    through PCA 160 + Joint Bayesian: what the pixels floor of a study costs per trial."""
    from facebench_plugins.deepid2.joint_bayesian import JointBayesianVerifier

    labels, first = bench.faces.labels, bench.units[0]
    features = {"pixels": identity_features(labels, PIXEL_DIM, rng, NOISE).astype(np.float32),
                "feature": identity_features(labels, FEATURE_DIM, rng, NOISE).astype(np.float32)}

    def trial(name: str) -> None:
        protocol.evaluate_unit(bench, first, features[name], JointBayesianVerifier(pca_dim=FEATURE_DIM))

    with watch_load() as load:
        t = measure({"pixels": lambda: trial("pixels"), "feature": lambda: trial("feature")},
                    repeats=ctx.pick(3, 1), warmup=1)
    return Row("blufr", f"trial 1 on {PIXEL_DIM}-d pixels vs {FEATURE_DIM}-d", t["pixels"], t["feature"],
               f"the same trial on {FEATURE_DIM}-d features (PCA {FEATURE_DIM} + Joint Bayesian on both)",
               t["pixels"].median / t["feature"].median, "pixels / feature time", Target("<=", 2.0), load,
               notes=["float32 features with identity structure, as extracted features are stored"],
               details={"pixel_dim": PIXEL_DIM, "feature_dim": FEATURE_DIM})


def available_memory_gb() -> float:
    """MemAvailable from /proc/meminfo (Linux), in GB; infinite where it cannot be read."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024 / 1e9
    except OSError:
        pass
    return float("inf")


def run(ctx: BenchContext) -> list[Row]:
    try:
        from facebench_plugins.deepid2.joint_bayesian import JointBayesianVerifier
    except ImportError as exc:
        return [skipped("blufr", "-", f"not available: the Joint Bayesian plugin cannot be imported ({exc})")]

    rng = np.random.default_rng(ctx.seed)
    shared = ctx.shared_data()
    config: Optional[Path] = shared / "lfw" / CONFIG_FILE if shared else None
    bench = official_benchmark(config) if config and config.is_file() else synthetic_benchmark(rng)
    labels = bench.faces.labels
    features = identity_features(labels, DIM, rng, NOISE)
    protocol = BlufrProtocol(BlufrProtocolConfig())
    outcomes: dict[str, Any] = {}

    def trial(unit: BlufrTrial) -> None:
        outcomes[unit.name] = protocol.evaluate_unit(bench, unit, features, JointBayesianVerifier())

    first = bench.units[0]
    details = {"source": bench.info["source"], "dim": DIM, "images": len(labels), "test_images": len(first.test),
               "gallery": len(first.gallery), "probes": len(first.probe)}
    with watch_load() as load:
        if ctx.quick:
            per_trial = measure({"ours": lambda: trial(first)}, repeats=2, warmup=1)["ours"]
        else:
            trial(first)  # warm-up
            samples = []
            for unit in bench.units[:TRIALS]:
                began = time.perf_counter()
                trial(unit)
                samples.append(time.perf_counter() - began)
            per_trial = Stats("s", tuple(samples))
    pixel_row = _pixel_row(ctx, bench, protocol, rng)
    ours = outcomes[first.name]
    details.update({"vr_trial1": ours.vr, "dir_trial1": ours.dir, "trial1_seconds": ours.seconds})
    row = Row("blufr", "one trial: VR@0.1% + DIR@1%", per_trial, ratio_def="-",
              target=Target("<=", 3.0, on="ours", unit="s"), load=load, details=details)
    if ctx.quick:
        row.notes.append("--quick: trial 1 only, timed twice after a warm-up; no baseline (it sorts all ~52M pairs: "
                         "about 5 GB and tens of seconds)")
        return [row, pixel_row]
    row.notes.append(f"full: each of {len(per_trial.samples)} trials timed once after a warm-up trial")
    rows = [row, pixel_row, Row("blufr", f"{len(per_trial.samples)} trials: total", Stats("s", (sum(per_trial.samples),)),
                     ratio_def="-", target=Target("<=", 30.0, on="ours", unit="s"), load=load, details=details)]
    free = available_memory_gb()
    if free < BASELINE_MEMORY_GB:
        rows.append(skipped("blufr", "trial 1 vs straightforward",
                            f"baseline skipped: it needs about 5 GB and {free:.1f} GB are available"))
        return rows

    def baseline() -> None:
        outcomes["baseline"] = straightforward_trial(JointBayesianVerifier(), features, labels, first)

    with watch_load() as load:
        base_t = measure({"baseline": baseline}, repeats=1, warmup=0)
    base = outcomes["baseline"]
    ours_trial1 = Stats("s", per_trial.samples[:1])
    rows.append(Row("blufr", "trial 1 vs straightforward", ours_trial1, base_t["baseline"],
                    "full score matrix + sklearn roc_curve on all pairs + Python loop over probes",
                    base_t["baseline"].median / ours_trial1.median, "baseline / ours time", load=load,
                    notes=["baseline timed once (it takes tens of seconds and ~5 GB)",
                           f"VR {base['vr']:.4f} and DIR {base['dir']:.4f} (ours: {ours.vr:.4f}, {ours.dir:.4f})"],
                    details={**details, "baseline_vr": base["vr"], "baseline_dir": base["dir"]}))
    return rows
