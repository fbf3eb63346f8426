"""BLUFR on LFW (Liao, Lei, Yi, Li, IJCB 2014): 10 trials of large-scale verification and
open-set identification over all 13,233 images.

LFW's 6,000 pairs cannot measure low-FAR performance, so BLUFR scores every test image
against every other (about 47 million impostor pairs per trial) and reports the verification
rate (VR, the TAR) at FAR = 0.1%, plus open-set identification: the detection and
identification rate (DIR) at rank 1 and FAR = 1% with a 1,000-image gallery. Each trial has
its own training set (about 1,500 people, disjoint from its test people) on which the
verifier (and its PCA) is fitted, and with ``data=lfw`` the network too (one model per
trial, regime unrestricted_no_outside). BLUFR ranks by mean - std over the trials.

The trials come from the official ``blufr_lfw_config.mat``: 1-based MATLAB indices into its
``imageList`` of LFW file names. How the figures are read is in
:mod:`facebench.protocols.blufr_metrics`.
"""
from __future__ import annotations

import faulthandler
import io
import math
import os
import re
import signal
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pandas as pd
import scipy.io

from facebench.components import FaceData, Protocol, Verifier
from facebench.config import ConfigError
from facebench.data.lfw import find_layout, load_people
from facebench.data.layouts import LfwLayout
from facebench.errors import DataError
from facebench.protocols.blufr_metrics import (
    ScoreMatrix,
    accept_rates,
    all_pair_scores,
    open_set_identification,
    thresholds_at_fars,
)
from facebench.verifiers import ProjectedVerifier

CONFIG_FILE = "blufr_lfw_config.mat"
VR_FAR = 1e-3
DIR_FAR = 1e-2
DIR_RANK = 1
#: FARs of the stored ROC: log-spaced, 10 per decade from 1e-6 to 1 (VR_FAR among them).
ROC_FARS = np.logspace(-6, 0, 61)
_FILE_NAME = re.compile(r"(.+)_([0-9]{4})\.jpg")
#: How long a damaged config may keep scipy's reader busy before it is refused (the official
#: one takes well under a second).
MAT_PROBE_SECONDS = 60
_VARIABLES = ("imageList", "labels", "trainIndex", "testIndex", "galIndex", "probIndex")


@dataclass
class BlufrProtocolConfig:
    """BLUFR on LFW: VR at FAR = 0.1% and DIR at rank 1, FAR = 1%, over 10 trials.

    root: the LFW folder, as for lfw_view2 (None: data.root with data=lfw, else $FACEBENCH_LFW,
      else the data home).
    variant: image folder under root (e.g. lfw-112X96); None: detected.
    crop: [left, top, right, bottom] box cut before resizing; None: the layout's default
      (facebench.data.layouts.DEFAULT_250_CROP for 250x250 images, none for aligned crops).
    config_file: the BLUFR trial definition; None: blufr_lfw_config.mat beside pairs.txt.
    trials: 1-based trials to evaluate; None: all 10. Fewer give a partial result.
    """

    name: str = "blufr"
    root: Optional[str] = None
    variant: Optional[str] = None
    crop: Optional[list[int]] = None
    config_file: Optional[str] = None
    trials: Optional[list[int]] = None


@dataclass
class BlufrFile:
    """The contents of a BLUFR config: image file names, labels and 0-based trial indices."""

    path: Path
    images: list[str]
    labels: np.ndarray
    train: list[np.ndarray]
    test: list[np.ndarray]
    gallery: list[np.ndarray]
    probe: list[np.ndarray]


def _variable(mat: dict[str, Any], name: str, path: Path) -> np.ndarray:
    if name not in mat:
        found = sorted(k for k in mat if not k.startswith("__"))
        raise DataError(
            f"{path}: the MATLAB variable {name!r} is missing (found: {', '.join(found) or 'none'}); a BLUFR "
            f"config holds {', '.join(_VARIABLES)}. Use the official {CONFIG_FILE} from the BLUFR package (config/lfw)."
        )
    return np.asarray(mat[name])


def _whole_numbers(value: Any, what: str, path: Path) -> np.ndarray:
    """``value`` as int64, refusing anything but whole numbers of a sane size: casting text or a
    struct raises an unrelated error, and casting NaN or 1e300 silently gives a huge negative
    number that would then pass for a label or index."""
    arr = np.asarray(value).ravel()
    if arr.dtype.kind in "iu":
        ok = arr.size == 0 or (int(arr.min()) > -(2**31) and int(arr.max()) < 2**31)
    elif arr.dtype.kind == "f":
        ok = bool(np.all(np.isfinite(arr) & (arr == np.round(arr)) & (np.abs(arr) < 2**31)))
    else:
        ok = False
    if not ok:
        raise DataError(f"{path}: {what} must hold whole numbers (got {arr.dtype} values); use the official {CONFIG_FILE}")
    return arr.astype(np.int64)


def _file_names(value: np.ndarray, path: Path) -> list[str]:
    """imageList's entries, each one piece of text (a MATLAB cell of char arrays)."""
    names = []
    for i, cell in enumerate(value.ravel()):
        entry = np.asarray(cell).ravel()
        if entry.size != 1 or entry.dtype.kind not in "US":
            raise DataError(f"{path}: imageList entry {i + 1} is not a file name (got {entry.dtype} x {entry.size})")
        names.append(str(entry[0]))
    return names


def _trial_indices(mat: dict[str, Any], name: str, path: Path, n_images: int) -> list[np.ndarray]:
    cells = _variable(mat, name, path).ravel()
    out = []
    for t, cell in enumerate(cells):
        index = _whole_numbers(cell, f"{name}{{{t + 1}}}", path)
        if index.size and (index.min() < 1 or index.max() > n_images):
            raise DataError(
                f"{path}: {name}{{{t + 1}}} holds indices outside 1..{n_images} (the 1-based MATLAB indices "
                "into imageList); the file is not a BLUFR config for this image list"
            )
        out.append(index - 1)
    return out


def _loadmat_isolated(path: Path) -> dict[str, Any]:
    """``scipy.io.loadmat`` of the file's bytes, parsed first in a forked child.

    scipy's MATLAB reader is compiled code that its documentation says is not hardened against
    damaged files: fuzzing found single flipped bytes that kill the interpreter with SIGSEGV
    (scipy 1.17) instead of raising. The child parses the same bytes the parent then parses, so
    a file that would crash the run is a DataError instead; a child still busy after
    ``MAT_PROBE_SECONDS`` is killed and the file refused. Where fork is unavailable the bytes
    are parsed directly.
    """
    data = path.read_bytes()
    if hasattr(os, "fork"):
        pid = os.fork()
        if pid == 0:  # the child reports by how it ends only: exit 0, or killed by a signal
            try:
                faulthandler.disable()  # the crash is reported by the parent, not dumped here
                warnings.simplefilter("ignore")
                scipy.io.loadmat(io.BytesIO(data))
            finally:
                os._exit(0)
        deadline = time.monotonic() + MAT_PROBE_SECONDS
        while not (ended := os.waitpid(pid, os.WNOHANG))[0]:
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                raise DataError(
                    f"{path}: reading it did not finish in {MAT_PROBE_SECONDS} s; the file is damaged. "
                    f"Download the official {CONFIG_FILE} again."
                )
            time.sleep(0.005)
        status = ended[1]
        if os.WIFSIGNALED(status):
            raise DataError(
                f"{path}: reading it crashed scipy's MATLAB reader ({signal.Signals(os.WTERMSIG(status)).name}); "
                f"the file is damaged. Download the official {CONFIG_FILE} again."
            )
    return scipy.io.loadmat(io.BytesIO(data))


def read_blufr_config(path: str | Path) -> BlufrFile:
    """Read a BLUFR ``.mat``; every problem is a DataError naming the file (and variable)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(
            f"BLUFR config {path} not found. Put the official {CONFIG_FILE} (BLUFR package, config/lfw) beside "
            "LFW's pairs.txt, or set protocol.config_file to it."
        )
    try:
        mat = _loadmat_isolated(path)
    except DataError:
        raise
    except Exception as exc:  # scipy documents no error contract for malformed files (IndexError, ...)
        raise DataError(
            f"{path}: not a readable MATLAB .mat file ({type(exc).__name__}: {exc}); use the official {CONFIG_FILE}"
        ) from exc
    images = _file_names(_variable(mat, "imageList", path), path)
    labels = _whole_numbers(_variable(mat, "labels", path), "labels", path)
    if len(labels) != len(images):
        raise DataError(f"{path}: {len(images)} entries in imageList but {len(labels)} labels")
    trials = [_trial_indices(mat, name, path, len(images)) for name in _VARIABLES[2:]]
    if len({len(t) for t in trials}) != 1:
        raise DataError(f"{path}: trainIndex, testIndex, galIndex and probIndex hold different numbers of trials")
    return BlufrFile(path, images, labels, *trials)


def image_relpaths(cfg: BlufrFile) -> list[str]:
    """``Name/Name_NNNN.jpg`` for every imageList entry.

    Checks that names and labels correspond one to one and that each person's images are
    numbered 1..count, as LFW numbers them (so the list can be decoded as LFW people).
    """
    relpaths, names, numbers = [], [], {}
    for file in cfg.images:
        match = _FILE_NAME.fullmatch(file)
        if not match:
            raise DataError(f"{cfg.path}: imageList entry {file!r} is not an LFW file name <Name>_<NNNN>.jpg")
        name = match.group(1)
        names.append(name)
        numbers.setdefault(name, []).append(int(match.group(2)))
        relpaths.append(f"{name}/{file}")
    pairs = set(zip(cfg.labels.tolist(), names))
    if not len(pairs) == len(numbers) == len(set(cfg.labels.tolist())):
        raise DataError(f"{cfg.path}: labels and the names in imageList do not correspond one to one")
    for name, got in numbers.items():
        if sorted(got) != list(range(1, len(got) + 1)):
            raise DataError(f"{cfg.path}: the images of {name} in imageList are not numbered 1..{len(got)} as in LFW")
    return relpaths


@dataclass
class BlufrTrial:
    """One trial, as indices into the benchmark's faces."""

    name: str
    train: np.ndarray
    test: np.ndarray
    gallery: np.ndarray
    probe: np.ndarray


@dataclass
class BlufrBenchmark:
    """All 13,233 faces, decoded once, and the trials as index sets into them.

    Shares the decoded-image cache with lfw_view1/lfw_view2 (the same files and crop).
    """

    name: str
    faces: FaceData
    units: list[BlufrTrial]
    info: dict = field(default_factory=dict)

    def people(self, index: np.ndarray) -> list[str]:
        return sorted({self.faces.names[k] for k in np.unique(self.faces.labels[index])})

    def image_index_of(self, people: list[str]) -> np.ndarray:
        """Indices of every image of the named people."""
        wanted = np.isin(np.asarray(self.faces.names), people)
        return np.flatnonzero(wanted[self.faces.labels])


@dataclass
class TrialOutcome:
    """One trial's figures, its thresholds, its TAR on the ROC_FARS grid and its sizes and timings."""

    name: str
    vr: float
    vr_threshold: float
    dir: float
    dir_threshold: float
    roc_tpr: np.ndarray
    counts: dict[str, int]
    seconds: dict[str, float]


def _finite(x: float) -> Optional[float]:
    """JSON has no NaN/Infinity: they become null."""
    return float(x) if math.isfinite(x) else None


@dataclass
class BlufrSummary:
    """The trials' figures, their mean, std (ddof=1, MATLAB's std) and mean - std, and the mean ROC."""

    trials: list[TrialOutcome]

    def _stats(self, values: list[float]) -> tuple[float, float, float]:
        arr = np.asarray(values, dtype=np.float64)
        std = float(arr.std(ddof=1)) if len(arr) > 1 else math.nan
        return float(arr.mean()), std, float(arr.mean()) - std

    @property
    def fpr(self) -> np.ndarray:
        """The FAR grid of the ROC; at each point the trials' false accept rates are at most this."""
        return ROC_FARS

    @property
    def tpr(self) -> np.ndarray:
        """TAR at each grid FAR, averaged over the trials (BLUFR plots the mean ROC)."""
        return np.mean([t.roc_tpr for t in self.trials], axis=0)

    def fold_table(self) -> pd.DataFrame:
        return pd.DataFrame(
            [{"trial": t.name, "vr": t.vr, "vr_threshold": t.vr_threshold, "dir": t.dir,
              "dir_threshold": t.dir_threshold, **t.counts, **t.seconds} for t in self.trials]
        )

    def unit_rows(self) -> list[dict[str, Any]]:
        """Each trial's figures, thresholds, sizes and timings."""
        return [
            {"name": t.name, "vr": t.vr, "vr_threshold": _finite(t.vr_threshold), "dir": t.dir,
             "dir_threshold": _finite(t.dir_threshold), **t.counts, **t.seconds}
            for t in self.trials
        ]

    def to_dict(self) -> dict[str, Any]:
        vr = self._stats([t.vr for t in self.trials])
        dir_ = self._stats([t.dir for t in self.trials])
        return {
            "vr_far": VR_FAR,
            "vr_mean": _finite(vr[0]),
            "vr_std": _finite(vr[1]),
            "vr_mean_minus_std": _finite(vr[2]),
            "dir_far": DIR_FAR,
            "dir_rank": DIR_RANK,
            "dir_mean": _finite(dir_[0]),
            "dir_std": _finite(dir_[1]),
            "dir_mean_minus_std": _finite(dir_[2]),
            "n_trials": len(self.trials),
            # Thresholds differ per trial (each fits its own verifier), so the mean ROC has none.
            "roc": {
                "fpr": [float(v) for v in self.fpr],
                "tpr": [float(v) for v in self.tpr],
                "thresholds": [None] * len(self.fpr),
            },
        }


def _project(verifier: Verifier, x: np.ndarray, rows: int = 4096) -> tuple[np.ndarray, ScoreMatrix]:
    """Features in the space the verifier scores in, and its all-vs-all scorer.

    A ProjectedVerifier's PCA is applied once here, in row blocks, instead of on every block
    of the score matrix.
    """
    if isinstance(verifier, ProjectedVerifier):
        z = np.concatenate([verifier.project(x[i : i + rows]) for i in range(0, len(x), rows)]) if len(x) else x
        return z, verifier.score_matrix_projected
    return x, verifier.score_matrix


class BlufrProtocol(Protocol):
    """The BLUFR protocol over LFW; trials are its evaluation units."""

    family = "lfw"
    primary_metric = "vr_mean_minus_std"

    def __init__(self, cfg: BlufrProtocolConfig) -> None:
        self.cfg = cfg
        self.name = cfg.name

    def _files(self) -> tuple[LfwLayout, BlufrFile, list[str]]:
        layout = find_layout(self.cfg.root, self.cfg.variant, self.cfg.crop, "protocol")
        config = read_blufr_config(Path(self.cfg.config_file) if self.cfg.config_file else layout.protocol_dir / CONFIG_FILE)
        return layout, config, image_relpaths(config)

    def check(self) -> None:
        """Read the trial definition and make sure every image it lists exists (no decoding)."""
        layout, config, relpaths = self._files()
        missing = [p for p in relpaths if not layout.image(p).is_file()]
        if missing:
            raise DataError(
                f"{config.path} lists {len(missing)} images missing under {layout.images_dir}, e.g. {missing[0]}. "
                "BLUFR needs all 13,233 LFW images."
            )

    def load(self, shape: tuple[int, int, int], cache_dir: str, on_bad_image: str) -> BlufrBenchmark:
        layout, config, relpaths = self._files()
        counts: dict[str, int] = {}
        for rel in relpaths:
            name = rel.split("/", 1)[0]
            counts[name] = counts.get(name, 0) + 1
        faces = load_people(layout, sorted(counts.items()), shape, cache_dir, on_bad_image)
        # imageList order -> position in faces; -1 for an image skipped as unreadable (on_bad_image=skip),
        # which then drops out of its trial's sets (faces.info lists the skips, the record counts them)
        position = {k: i for i, k in enumerate(faces.keys)}
        order = np.array([position.get(rel, -1) for rel in relpaths], dtype=np.int64)

        def index(ix: np.ndarray) -> np.ndarray:
            mapped = order[ix]
            return mapped[mapped >= 0]

        trials = []
        for t in range(len(config.train)):
            trial = BlufrTrial(
                f"trial{t + 1}",
                index(config.train[t]),
                index(config.test[t]),
                index(config.gallery[t]),
                index(config.probe[t]),
            )
            if not np.isin(np.concatenate([trial.gallery, trial.probe]), trial.test).all():
                raise DataError(f"{config.path}: trial {t + 1} has gallery or probe images outside its test set")
            overlap = set(faces.labels[trial.train].tolist()) & set(faces.labels[trial.test].tolist())
            if overlap:
                shown = ", ".join(sorted(faces.names[k] for k in overlap)[:10])
                raise DataError(
                    f"{config.path}: trial {t + 1} trains on {len(overlap)} of its test people ({shown}); "
                    "BLUFR's training and test people must be disjoint"
                )
            trials.append(trial)
        info = {**layout.describe(), "config_file": str(config.path), "trials": len(trials)}
        return BlufrBenchmark(name=self.name, faces=faces, units=trials, info=info)

    def units(self, bench: BlufrBenchmark) -> list[BlufrTrial]:
        if not self.cfg.trials:
            return bench.units
        bad = [t for t in self.cfg.trials if not 1 <= t <= len(bench.units)]
        if bad:
            raise ConfigError(
                f"protocol.trials={list(self.cfg.trials)}: no trial {bad}; BLUFR has trials 1..{len(bench.units)}"
            )
        return [bench.units[t - 1] for t in self.cfg.trials]

    def train_people(self, bench: BlufrBenchmark, unit: BlufrTrial) -> list[str]:
        return bench.people(unit.train)

    def test_people(self, bench: BlufrBenchmark, unit: BlufrTrial) -> list[str]:
        return bench.people(unit.test)

    def evaluate_unit(
        self, bench: BlufrBenchmark, unit: BlufrTrial, features: np.ndarray, verifier: Verifier,
        fit_people: Optional[list[str]] = None,
    ) -> TrialOutcome:
        """Fit on the trial's training set; VR over all test pairs, DIR over probes against the
        gallery. BLUFR defines its own training sets, so ``fit_people`` must stay None."""
        if fit_people is not None:
            raise ConfigError("protocol=blufr fits each trial's verifier on the trial's own training set: "
                              "set evaluation.verifier_holdout=0")
        labels = bench.faces.labels
        t0 = time.perf_counter()
        verifier.fit(features[unit.train], labels[unit.train])
        t1 = time.perf_counter()
        z, score = _project(verifier, features[unit.test])
        genuine, impostor = all_pair_scores(score, z, labels[unit.test])
        n_impostor = len(impostor)
        thresholds = thresholds_at_fars(impostor, ROC_FARS)
        del impostor
        tpr = accept_rates(genuine, thresholds)
        vr_at = int(np.argmin(np.abs(ROC_FARS - VR_FAR)))
        t2 = time.perf_counter()
        row = np.full(len(labels), -1)
        row[unit.test] = np.arange(len(unit.test))  # gallery and probes are test images: reuse their projection
        dir_, dir_threshold, n_gen_probes, n_imp_probes = open_set_identification(
            score(z[row[unit.probe]], z[row[unit.gallery]]), labels[unit.probe], labels[unit.gallery], DIR_FAR
        )
        t3 = time.perf_counter()
        counts = {
            "fit_images": len(unit.train),
            "fit_people": len(np.unique(labels[unit.train])),
            "test_images": len(unit.test),
            "n_genuine": len(genuine),
            "n_impostor": n_impostor,
            "gallery_images": len(unit.gallery),
            "genuine_probes": n_gen_probes,
            "impostor_probes": n_imp_probes,
        }
        seconds = {"fit_seconds": round(t1 - t0, 3), "verification_seconds": round(t2 - t1, 3),
                   "identification_seconds": round(t3 - t2, 3)}
        vr, vr_threshold = float(tpr[vr_at]), float(thresholds[vr_at])
        return TrialOutcome(unit.name, vr, vr_threshold, dir_, dir_threshold, tpr, counts, seconds)

    def summarize(self, outcomes: list[TrialOutcome]) -> BlufrSummary:
        if not outcomes:
            raise ValueError("no trials to summarise")
        return BlufrSummary(outcomes)

    def headline(self, metrics: dict[str, Any], n_units: int) -> str:
        def figure(key: str) -> str:
            mean, std, low = (metrics[f"{key}_{s}"] for s in ("mean", "std", "mean_minus_std"))
            spread = f" ± {100 * std:.2f} (std), mean - std {100 * low:.2f}%" if std is not None else ""
            return f"{100 * mean:.2f}%{spread}"

        return (
            f"VR@FAR=0.1% {figure('vr')}; DIR@FAR=1% rank 1 {figure('dir')}; over {n_units} trial(s)"
        )
