"""Fitting a backbone with its loss on faces held in memory.

Batches are drawn from generators seeded by (seed, step), never from a running stream, so a
run resumed from a checkpoint at step s sees exactly the batches the uninterrupted run saw
after s: resumed and uninterrupted runs end with equal weights on the CPU.
"""
from __future__ import annotations

import io
import logging
import math
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from facebench import distributed
from facebench.components import Backbone, FaceData, Loss
from facebench.config import ConfigError, TrainerConfig
from facebench.atomic_io import atomic_write_bytes
from facebench.data.transforms import shift_images, to_float_tensor
from facebench.errors import FacebenchError

log = logging.getLogger(__name__)


class TrainingDiverged(FacebenchError):
    """A loss term became NaN or infinite; the last good checkpoint is kept."""


class TrainingInterrupted(FacebenchError):
    """SIGINT/SIGTERM arrived; a checkpoint was saved and ``trainer.resume=true`` continues.

    ``signum`` is the signal that stopped training (None when unknown), so the command line can
    exit with the shell's 128 + signal status that schedulers read as "killed, may requeue".
    """

    def __init__(self, message: str, signum: Optional[int] = None) -> None:
        super().__init__(message)
        self.signum = signum


class CheckpointError(FacebenchError):
    """A checkpoint that cannot be resumed from: unreadable, or not plain tensors (refused unread)."""


@dataclass
class TrainStats:
    steps: int = 0
    seconds: float = 0.0
    images: int = 0
    resumed_from: int = 0
    #: training seconds spent on this unit in earlier sittings, before the checkpoint it resumed from
    earlier_seconds: float = 0.0
    stopped_early: bool = False
    last_metrics: dict[str, float] = field(default_factory=dict)
    curve: list[dict[str, float]] = field(default_factory=list)

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else float("nan")


def pk_batch(labels: np.ndarray, p: int, k: int, rng: np.random.Generator, by_label: list[np.ndarray]) -> np.ndarray:
    """P identities x K images each; identities with fewer than K images are sampled with replacement.

    Only identities with at least 2 images are drawn, so every identity in the batch yields a
    positive pair.
    """
    eligible = [c for c, idx in enumerate(by_label) if len(idx) >= 2]
    if len(eligible) < 2:
        raise ConfigError("P x K batches need at least 2 identities with 2 or more images in the training set")
    chosen = rng.choice(eligible, size=min(p, len(eligible)), replace=False)
    parts = []
    for c in chosen:
        idx = by_label[c]
        parts.append(rng.choice(idx, size=k, replace=len(idx) < k))
    return np.concatenate(parts)


class BatchPlan:
    """Which images, flips and shifts make up step s: a pure function of (seed, step)."""

    def __init__(self, labels: np.ndarray, cfg: TrainerConfig, batch_kind: str, seed: int) -> None:
        self.labels = labels
        self.cfg = cfg
        self.kind = batch_kind
        self.seed = seed
        self.by_label = [np.flatnonzero(labels == c) for c in range(int(labels.max()) + 1)] if len(labels) else []
        self.batch = cfg.pk_identities * cfg.pk_images if batch_kind == "pk" else cfg.batch_size
        self.per_epoch = max(1, len(labels) // self.batch)

    def indices(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng([self.seed, 1, step])
        if self.kind == "pk":
            idx = pk_batch(self.labels, self.cfg.pk_identities, self.cfg.pk_images, rng, self.by_label)
        else:
            epoch, pos = divmod(step, self.per_epoch)
            order = np.random.default_rng([self.seed, 2, epoch]).permutation(len(self.labels))
            idx = order[pos * self.batch : (pos + 1) * self.batch]
        flips = rng.random(len(idx)) < 0.5 if self.cfg.flip_augment else np.zeros(len(idx), dtype=bool)
        reach = self.cfg.shift_augment
        shifts = rng.integers(-reach, reach + 1, size=(len(idx), 2)) if reach > 0 else None
        return idx, flips, shifts


def lr_factor(step: int, cfg: TrainerConfig) -> float:
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    span = max(1, cfg.steps - cfg.warmup_steps)
    t = (step - cfg.warmup_steps) / span
    if cfg.schedule == "constant":
        return 1.0
    if cfg.schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, t)))
    if cfg.schedule == "step":
        return 0.01 if t >= 0.75 else 0.1 if t >= 0.5 else 1.0
    raise ConfigError(f"trainer.schedule={cfg.schedule!r}: use constant, cosine or step")


def make_optimizer(params: list[nn.Parameter], cfg: TrainerConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    raise ConfigError(f"trainer.optimizer={cfg.optimizer!r}: use sgd, adam or adamw")


def parameter_groups(backbone: nn.Module, loss: nn.Module, cfg: TrainerConfig) -> list[dict[str, Any]]:
    """Backbone and loss parameters; a loss may ask for its own learning rate per parameter group
    (center loss updates its centres at their own rate) through ``param_groups(base_lr)``."""
    groups: list[dict[str, Any]] = [{"params": [p for p in backbone.parameters() if p.requires_grad]}]
    if hasattr(loss, "param_groups"):
        groups.extend(loss.param_groups(cfg.lr))
    else:
        own = [p for p in loss.parameters() if p.requires_grad]
        if own:
            groups.append({"params": own})
    return [g for g in groups if g["params"]]


class _StopSignal:
    """Turns the first SIGINT or SIGTERM into a flag checked between steps.

    A step is applied only as a whole (the loss may update buffers in its forward pass, the
    optimiser updates weights), so stopping at a step boundary is the only point at which a
    checkpoint holds a state the uninterrupted run also passed through; resuming from it is
    then exact. A second SIGINT raises KeyboardInterrupt at once, for a user who cannot wait
    for the step to end. Handlers are installed only in the main thread (Python allows no
    other), and SIGINT only where it still has Python's default handler (an ignored SIGINT,
    e.g. under nohup, stays ignored).
    """

    def __init__(self) -> None:
        self.received: Optional[int] = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> "_StopSignal":
        if threading.current_thread() is threading.main_thread():
            if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
                self._previous[signal.SIGINT] = signal.signal(signal.SIGINT, self._handle)
            self._previous[signal.SIGTERM] = signal.signal(signal.SIGTERM, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.received is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.received = signum

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous = {}
        if exc_type is None and self.received is not None:
            # arrived after the last step's check: deliver it to the restored handler, never drop it
            signal.raise_signal(self.received)


def non_finite_state(backbone: nn.Module, loss: nn.Module) -> Optional[str]:
    """The name of the first floating-point parameter or buffer that is NaN or infinite, else None.

    A loss can stay finite for the step whose update overflows the weights; checking the weights
    before each checkpoint keeps such a state out of the file that resuming would start from.
    """
    for owner, module in (("backbone", backbone), ("loss", loss)):
        for name, tensor in module.state_dict().items():
            if tensor.is_floating_point() and not torch.isfinite(tensor).all():
                return f"{owner}.{name}"
    return None


#: What else a checkpoint carries: objects measured along the training (a learning curve) whose
#: ``state_dict()`` is plain tensors, so a resumed run reports what the uninterrupted one would.
Extras = dict[str, Any]


def save_checkpoint(path: Path, step: int, backbone: nn.Module, loss: nn.Module, opt: torch.optim.Optimizer,
                    extras: Optional[Extras] = None, seconds: float = 0.0) -> None:
    """``seconds``: training time spent to reach ``step`` over every sitting, so the compute a
    result cost survives interruptions."""
    state = {
        "step": step,
        "seconds": float(seconds),
        "backbone": backbone.state_dict(),
        "loss": loss.state_dict(),
        "optimizer": opt.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "extras": {name: extra.state_dict() for name, extra in (extras or {}).items()},
    }
    # Serialised in memory first: torch's writer reports a failed write as a position mismatch
    # ("unexpected pos"); a plain write of the bytes reports a full disk as one.
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(path, lambda fh: fh.write(buffer.getbuffer()), what="checkpoint")


def read_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint's state. Only plain tensors and containers are unpickled (``weights_only=True``):
    a checkpoint file is data, and a crafted one must not run code."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError for refused objects, RuntimeError/EOFError for torn files
        raise CheckpointError(
            f"checkpoint {path} cannot be read ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}). "
            "facebench loads plain tensors only; delete the file to start over, or set trainer.resume=false."
        ) from exc


def load_checkpoint(path: Path, backbone: nn.Module, loss: nn.Module, opt: torch.optim.Optimizer,
                    extras: Optional[Extras] = None) -> tuple[int, float]:
    """Restore a checkpoint; returns its step and the training seconds spent to reach it
    (0 for checkpoints written before they carried it)."""
    state = read_checkpoint(path)
    try:
        backbone.load_state_dict(state["backbone"])
        loss.load_state_dict(state["loss"])
        opt.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"])
        saved_extras = state.get("extras", {})  # checkpoints written before extras carry none
        for name, extra in (extras or {}).items():
            if name in saved_extras:
                extra.load_state_dict(saved_extras[name])
        return int(state["step"]), float(state.get("seconds", 0.0))
    except (KeyError, RuntimeError, ValueError, TypeError) as exc:
        first = str(exc).strip().splitlines()
        detail = " ".join(line.strip() for line in first[:3])
        raise CheckpointError(
            f"checkpoint {path} does not fit this run's model ({type(exc).__name__}: {detail[:400]}). It was written by "
            "another model or another number of training identities (the data changed since); delete it to start "
            "over, or set trainer.resume=false."
        ) from exc


def _resume(checkpoint: Optional[Path], cfg: TrainerConfig, backbone: nn.Module, loss: nn.Module,
            opt: torch.optim.Optimizer, label: str, extras: Optional[Extras] = None) -> tuple[int, float]:
    """The step to start from and the seconds spent reaching it: a checkpoint's when
    ``trainer.resume`` finds one, else 0."""
    if checkpoint is not None and cfg.resume and checkpoint.exists():
        start, seconds = load_checkpoint(checkpoint, backbone, loss, opt, extras)
        log.info("%s: resumed from %s at step %d", label, checkpoint, start)
        return start, seconds
    if cfg.resume:
        log.info("%s: trainer.resume=true but no checkpoint at %s; starting at step 0", label, checkpoint)
    return 0, 0.0


def _step_batch(plan: BatchPlan, step: int, images: torch.Tensor, labels: torch.Tensor, block: int,
                device: torch.device) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Step ``step``'s planned batch, this rank's share of it, augmented and on ``device``;
    with the whole batch's size."""
    idx, flips, shifts = plan.indices(step)
    batch_images = len(idx)
    part = distributed.local_part(batch_images, block)
    idx, flips = idx[part], flips[part]
    x = images[idx]
    if shifts is not None:
        x = shift_images(x, shifts[part])
    if flips.any():
        f = torch.from_numpy(flips)
        x[f] = x[f].flip(-1)
    return to_float_tensor(x.to(device, non_blocking=True)), labels[idx].to(device, non_blocking=True), batch_images


def _log_step(out: Any, lr: float, done: int, steps: int, label: str, rate: float, bar: Any,
              on_log: Optional[Callable[[int, dict[str, float]], None]]) -> dict[str, float]:
    """The step's loss terms and metrics (averaged over DDP ranks) to the log, the progress bar
    and ``on_log``; returns them."""
    metrics = {k: float(v.detach()) for k, v in out.terms.items()}
    metrics.update(out.metrics)
    metrics = distributed.mean_over_ranks(metrics)
    metrics["lr"] = lr
    log.info("%s step %d/%d %s (%.0f img/s)", label, done, steps, " ".join(f"{k}={v:.4g}" for k, v in metrics.items()), rate)
    bar.set_postfix({k: f"{v:.3g}" for k, v in metrics.items() if k != "lr"}, refresh=False)
    if on_log:
        on_log(done, metrics)
    return metrics


def train(
    backbone: Backbone,
    loss: Loss,
    faces: FaceData,
    cfg: TrainerConfig,
    device: torch.device,
    seed: int,
    checkpoint: Optional[Path] = None,
    label: str = "train",
    on_log: Optional[Callable[[int, dict[str, float]], None]] = None,
    on_step: Optional[Callable[[int], None]] = None,
    extras: Optional[Extras] = None,
) -> TrainStats:
    """Fit ``backbone`` + ``loss`` for ``cfg.steps`` steps on ``faces``; returns what happened.

    ``extras``: objects saved in and restored from the checkpoints beside the nets (see Extras).

    Under torchrun (``facebench.distributed``) each rank trains on its share of every planned
    batch through DDP, the ranks take every decision that ends training at the same step, and
    only rank 0 writes checkpoints.
    """
    stats = TrainStats()
    if not getattr(backbone, "trainable", True) or cfg.steps <= 0:
        return stats
    torch.manual_seed(seed)
    backbone.to(device).train()
    loss.to(device).train()
    opt = make_optimizer(parameter_groups(backbone, loss, cfg), cfg)
    base_lrs = [g["lr"] for g in opt.param_groups]
    start, stats.earlier_seconds = _resume(checkpoint, cfg, backbone, loss, opt, label, extras)
    stats.resumed_from = start

    images = torch.from_numpy(np.array(faces.images)).permute(0, 3, 1, 2)  # into RAM, writable
    labels = torch.from_numpy(np.asarray(faces.labels, dtype=np.int64))
    plan = BatchPlan(np.asarray(faces.labels), cfg, getattr(loss, "batch", "plain"), seed)
    block = cfg.pk_images if plan.kind == "pk" else 1  # a rank's share holds whole identities
    model = distributed.wrap(backbone, loss, device)
    every = cfg.checkpoint_every or plan.per_epoch
    amp = cfg.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    began = time.perf_counter()
    bar = tqdm(total=cfg.steps, initial=start, desc=label, mininterval=2.0, disable=None, leave=False)
    step = start
    completed = start  # steps whose update is fully applied: the only states a checkpoint may hold
    saved = start if stats.resumed_from else None  # step of the checkpoint on disk from this run, if any

    def kept() -> str:
        if checkpoint is None:
            return "no checkpoint is configured"
        if saved is None:
            return f"no checkpoint was written yet ({checkpoint})"
        return f"the last good checkpoint (step {saved}) is kept at {checkpoint}"

    with _StopSignal() as stop:
        try:
            for step in range(start, cfg.steps):
                x, y, batch_images = _step_batch(plan, step, images, labels, block, device)
                factor = lr_factor(step, cfg)
                for g, base in zip(opt.param_groups, base_lrs):
                    g["lr"] = base * factor
                with torch.autocast(device.type, enabled=amp):
                    out = model(x, y)
                bad = [k for k, v in out.terms.items() if not torch.isfinite(v).all()]
                if distributed.any_rank(bool(bad)):
                    what = (
                        f"loss term {bad[0]!r} became {out.terms[bad[0]].item()}"
                        if bad
                        else "a loss term became non-finite on another DDP rank"
                    )
                    raise TrainingDiverged(
                        f"{label}: {what} at step {step + 1}/{cfg.steps}. "
                        f"Lower trainer.lr (now {cfg.lr}) or set trainer.grad_clip; {kept()}."
                    )
                opt.zero_grad(set_to_none=True)
                scaler.scale(out.total).backward()
                if cfg.grad_clip:
                    scaler.unscale_(opt)
                    torch.nn.utils.clip_grad_norm_([p for g in opt.param_groups for p in g["params"]], cfg.grad_clip)
                scaler.step(opt)
                scaler.update()
                stats.images += batch_images
                completed = done = step + 1
                if cfg.log_every and (done % cfg.log_every == 0 or done == cfg.steps):
                    stats.last_metrics = _log_step(out, base_lrs[0] * factor, done, cfg.steps, label,
                                                   stats.images / max(1e-9, time.perf_counter() - began), bar, on_log)
                bar.update(1)
                if on_step is not None:  # e.g. a learning-curve point; it must leave the nets in training mode
                    on_step(done)
                # taken once per step and by every rank alike: a rank that stopped alone would
                # leave the others waiting for its gradients
                stopping = distributed.any_rank_signal(stop.received)
                due = done % every == 0 or done == cfg.steps or stopping is not None
                if checkpoint is not None and due:
                    broken = non_finite_state(backbone, loss)
                    if broken:
                        raise TrainingDiverged(
                            f"{label}: {broken} became NaN or infinite in step {done}/{cfg.steps} although every "
                            f"loss term was finite. Lower trainer.lr (now {cfg.lr}) or set trainer.grad_clip; {kept()}."
                        )
                    if distributed.is_main():
                        save_checkpoint(checkpoint, done, backbone, loss, opt, extras,
                                        seconds=stats.earlier_seconds + time.perf_counter() - began)
                    saved = done
                if stopping is not None:
                    name = signal.Signals(stopping).name
                    raise TrainingInterrupted(
                        f"{label}: {name} received; stopped after step {done}/{cfg.steps}, "
                        + (f"checkpoint saved to {checkpoint}. Run the same command with trainer.resume=true to continue."
                           if checkpoint is not None else "no checkpoint is configured, so nothing can be resumed."),
                        signum=stopping,
                    )
                if cfg.max_seconds is not None and distributed.any_rank(time.perf_counter() - began > cfg.max_seconds):
                    stats.stopped_early = True
                    log.warning("%s: trainer.max_seconds=%s reached at step %d", label, cfg.max_seconds, done)
                    break
        except KeyboardInterrupt:
            # A second SIGINT can land anywhere inside a step, where weights or loss buffers may
            # hold part of an update: saving that state would make the resumed run differ from an
            # uninterrupted one, so only what was checkpointed at a step boundary is kept.
            raise TrainingInterrupted(
                f"{label}: stopped at once after {completed}/{cfg.steps} steps (second SIGINT); {kept()}. "
                "Run the same command with trainer.resume=true to continue from it.",
                signum=signal.SIGINT,
            ) from None
        finally:
            bar.close()
    stats.steps = step + 1 - start if cfg.steps > start else 0
    stats.seconds = time.perf_counter() - began
    return stats
