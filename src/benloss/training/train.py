"""Training one model (an architecture of ``benloss.architectures``) with one loss: per-epoch validation, atomic
checkpoints, exact resumption."""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import random
import shutil
import signal
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import Tensor
from tqdm import tqdm

from benloss.architectures.build import build_model
from benloss.atomic import atomic_outputs
from benloss.errors import BenlossError
from benloss.evaluation.metrics import MultiLabelMetrics
from benloss.evaluation.ranking import ranking_summary
from benloss.facts.bands import read_band_statistics
from benloss.layout import (
    CHECKPOINT,
    ENCODED_FILES,
    MODEL_FILES,
    SNAPSHOTS,
    SNAPSHOTS_IN_PROGRESS,
    snapshot,
    snapshot_epochs,
)
from benloss.training.batches import (
    DeviceResidentSplit,
    EncodedSplit,
    batch_plan,
    fits_on_device,
    loader,
    split_bytes,
    to_device,
)
from benloss.training.config import TrainConfig
from benloss.training.losses import MultiLabelLoss, build_loss
from benloss.training.memory import warn_if_uncached
from benloss.training.models import BandNormalizer, count_parameters, parameter_groups

log = logging.getLogger(__name__)

HISTORY_COLUMNS = (
    "epoch", "train_loss", "val_loss",
    "precision_samples", "recall_samples", "f1_samples",
    "precision_micro", "recall_micro", "f1_micro",
    "precision_macro", "recall_macro", "f1_macro", "map_macro",
    "zero_grad_fraction", "train_seconds", "val_seconds", "images_per_second",
)  # fmt: skip
TIMING_COLUMNS = ("train_seconds", "val_seconds", "images_per_second")
#: Steps between reads of the per-step losses back to the host (the only syncs of a training epoch).
SYNC_STEPS = 100


def rmsprop(model: torch.nn.Module, config: TrainConfig) -> torch.optim.RMSprop:
    """RMSprop as tf.keras's (TF 2, no momentum): accumulator from zero, v ← ρv + (1 − ρ)g², w ← w − lr·g/(√v + ε).

    PyTorch's RMSprop is exactly this (unlike TF1's ``RMSPropOptimizer``, whose accumulator starts at 1 with
    ε inside the square root); weight decay, when set, adds decay·w to the kernels' gradients.
    """
    return torch.optim.RMSprop(
        parameter_groups(model, config.weight_decay), lr=config.lr, alpha=config.rmsprop_alpha, eps=config.rmsprop_eps
    )


def adamw(model: torch.nn.Module, config: TrainConfig) -> torch.optim.AdamW:
    """AdamW (PyTorch's betas 0.9 and 0.999, ε 1e-8) with decoupled weight decay on the kernels only."""
    return torch.optim.AdamW(parameter_groups(model, config.weight_decay), lr=config.lr)


OPTIMIZERS = {"rmsprop": rmsprop, "adamw": adamw}
SCHEDULES = ("constant", "cosine")


def make_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """``training.optimizer``'s optimiser over the model's parameter groups."""
    if config.optimizer not in OPTIMIZERS:
        raise BenlossError(f"training.optimizer {config.optimizer!r}: choose from {', '.join(OPTIMIZERS)}")
    return OPTIMIZERS[config.optimizer](model, config)


def learning_rate_factor(step: int, total_steps: int, warmup_steps: int, schedule: str) -> float:
    """The factor of ``lr`` for optimiser step ``step`` (0-based): a linear warm-up from lr/warmup to lr over
    ``warmup_steps``, then constant, or a cosine decay to 0 at ``total_steps``."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def make_schedule(optimizer: torch.optim.Optimizer, config: TrainConfig, steps_per_epoch: int):
    """``training.schedule`` per optimiser step, with ``training.warmup_epochs`` of linear warm-up first."""
    if config.schedule not in SCHEDULES:
        raise BenlossError(f"training.schedule {config.schedule!r}: choose from {', '.join(SCHEDULES)}")
    total, warmup = config.epochs * steps_per_epoch, config.warmup_epochs * steps_per_epoch
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: learning_rate_factor(step, total, warmup, config.schedule)
    )


class Interrupted(BenlossError, RuntimeError):
    """SIGTERM arrived (a SLURM time limit, a preemption): the last finished epoch is checkpointed."""


class NonFiniteLoss(BenlossError, FloatingPointError):
    """The loss became NaN or infinite."""


def choose_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def class_counts_from_csv(path: Path) -> np.ndarray:
    """Training-split count per class, official order, from the label stage's ``class_counts.csv``."""
    return pd.read_csv(path, index_col="class")["train"].to_numpy(dtype=np.float64)


def constant_baseline(train_labels: np.ndarray, val_labels: np.ndarray) -> dict:
    """The best constant predictor: the k most frequent training classes for every image, k chosen on validation."""
    order = np.argsort(-train_labels.sum(0), kind="stable")
    best = {"k": 0, "f1_micro": 0.0, "f1_samples": 0.0}
    for k in range(1, train_labels.shape[1] + 1):
        prediction = np.zeros_like(val_labels, dtype=bool)
        prediction[:, order[:k]] = True
        metrics = MultiLabelMetrics(val_labels.shape[1])
        metrics.update(prediction, val_labels)
        result = metrics.compute()
        if result["f1_micro"] > best["f1_micro"]:
            best = {"k": k, "f1_micro": result["f1_micro"], "f1_samples": result["f1_samples"]}
    best["classes"] = [int(c) for c in order[: best["k"]]]
    return best


class Trainer:
    """Trains one model; ``run`` resumes from ``checkpoint`` when it matches this configuration."""

    def __init__(self, config: TrainConfig, encoded: Path, class_counts: Path, outdir: Path) -> None:
        self.config = config
        self.outdir = Path(outdir)
        self.checkpoint_path = self.outdir / CHECKPOINT
        self.device = choose_device(config.device)
        torch.set_num_threads(max(1, config.threads))
        seed_everything(config.seed)
        self.train_split = EncodedSplit(encoded, "train")
        self.val_split = EncodedSplit(encoded, "val")
        self.normalizer = BandNormalizer(read_band_statistics(Path(encoded) / ENCODED_FILES["band_statistics"])).to(
            self.device
        )
        self.class_counts = class_counts_from_csv(class_counts)
        self.loss: MultiLabelLoss = build_loss(
            config.loss, class_counts=self.class_counts, n_images=self.train_split.n_images, **config.loss_params
        )
        self.loss.to(self.device)
        self.memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
        self.n_classes = self.train_split.arrays["labels"].shape[1]
        self.model = build_model(config.architecture, config.width, self.n_classes).to(
            self.device, memory_format=self.memory_format
        )
        self.optimizer = make_optimizer(self.model, config)
        steps_per_epoch = len(batch_plan(self.train_split.n_images, config.batch_size, True, config.seed, 1))
        self.schedule = make_schedule(self.optimizer, config, steps_per_epoch)
        self.resident = self._resident_splits() if config.data_on_device else None
        self.history: list[dict] = []
        self.start_epoch = 1
        self._stop = False

    def _resident_splits(self) -> dict[str, DeviceResidentSplit] | None:
        """Both splits on the device, or ``None`` (with a warning) when they would not fit beside training."""
        splits = (self.train_split, self.val_split)
        nbytes = sum(split_bytes(split) for split in splits)
        if not fits_on_device(nbytes, self.device):
            log.warning("data_on_device: the encoded splits (%.1f GiB) do not fit on %s beside training; "
                        "loading batches from host memory instead", nbytes / 2**30, self.device)  # fmt: skip
            return None
        try:
            resident = {split.split: DeviceResidentSplit(split, self.device) for split in splits}
        except torch.OutOfMemoryError:
            resident = None
        if resident is None:  # the partial copies are gone with the exception: hand their memory back
            torch.cuda.empty_cache()
            log.warning("data_on_device: %s ran out of memory holding the encoded splits (%.1f GiB); loading "
                        "batches from host memory instead", self.device, nbytes / 2**30)  # fmt: skip
            return None
        log.info("data_on_device: %.1f GiB of encoded arrays held on %s", nbytes / 2**30, self.device)
        return resident

    # -- checkpoints -------------------------------------------------------------------------------
    def save_checkpoint(self, epoch: int) -> None:
        state = {
            "fingerprint": self.config.fingerprint(),
            "epoch": epoch,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "rng": _rng_state(),
            "history": self.history,
        }
        with atomic_outputs(self.checkpoint_path) as (tmp,):
            torch.save(state, tmp)

    def _missing_snapshots(self, last_epoch: int) -> list[int]:
        """The snapshot epochs up to ``last_epoch`` whose file is not waiting with that epoch in it."""
        missing = []
        for number, epoch in enumerate(snapshot_epochs(self.config.epochs, self.config.snapshots)):
            path = self.outdir / SNAPSHOTS_IN_PROGRESS / snapshot(number)
            if epoch <= last_epoch and (
                not path.exists() or torch.load(path, map_location="cpu", weights_only=False)["epoch"] != epoch
            ):
                missing.append(epoch)
        return missing

    def save_snapshot(self, epoch: int) -> None:
        """The weights after ``epoch``, where ``snapshots`` asks for them (for the loss landscapes), written before
        the epoch's checkpoint so a resumed run never lacks one; ``_finish`` moves them to ``SNAPSHOTS``."""
        epochs = snapshot_epochs(self.config.epochs, self.config.snapshots)
        if epoch in epochs:
            path = self.outdir / SNAPSHOTS_IN_PROGRESS / snapshot(epochs.index(epoch))
            path.parent.mkdir(exist_ok=True)
            with atomic_outputs(path) as (tmp,):
                torch.save({"epoch": epoch, "state_dict": self.model.state_dict()}, tmp)

    def try_resume(self) -> None:
        if not self.checkpoint_path.exists():
            return
        state = torch.load(self.checkpoint_path, map_location=self.device, weights_only=False)
        if state["fingerprint"] != self.config.fingerprint():
            log.warning("ignoring %s: it was written with other settings", self.checkpoint_path)
            return
        missing = self._missing_snapshots(state["epoch"])
        if missing:
            log.warning("ignoring %s: the snapshots after epochs %s are not in %s (landscape.snapshots changed?)",
                        self.checkpoint_path, missing, self.outdir / SNAPSHOTS_IN_PROGRESS)  # fmt: skip
            return
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if "schedule" in state:  # checkpoints from before schedules held a constant rate
            self.schedule.load_state_dict(state["schedule"])
        _set_rng_state(state["rng"])
        self.history = state["history"]
        self.start_epoch = state["epoch"] + 1
        log.info("resuming from %s after epoch %d", self.checkpoint_path, state["epoch"])

    # -- batches -----------------------------------------------------------------------------------
    def _batches(self, split: EncodedSplit, plan: list[np.ndarray]):
        if self.resident is not None:
            yield from self.resident[split.split].batches(plan)
            return
        pin = self.device.type == "cuda"
        for batch in loader(split, plan, self.config.workers, pin):
            yield to_device(batch, self.device)

    def _scores(self, batch: dict[str, Tensor]) -> Tensor:
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.config.amp):
            return self.model(*(x.contiguous(memory_format=self.memory_format) for x in self.normalizer(batch)))

    # -- one epoch ---------------------------------------------------------------------------------
    def train_epoch(self, epoch: int) -> tuple[float, float, int]:
        """One pass over the training split; returns mean loss, zero-gradient fraction and images seen.

        Per-step numbers stay on the device and are read back every ``SYNC_STEPS`` steps (and at the end),
        so an accelerator is never stalled waiting for the host; a non-finite loss is still reported with
        its epoch and batch.
        """
        self.model.train()
        plan = batch_plan(self.train_split.n_images, self.config.batch_size, True, self.config.seed, epoch)
        losses, zero_grads, sizes, checked = [], [], [], 0
        progress = tqdm(self._batches(self.train_split, plan), total=len(plan), desc=f"epoch {epoch}", mininterval=5)
        for step, batch in enumerate(progress):
            if self._stop:
                raise Interrupted(f"stopped by SIGTERM during epoch {epoch}; resumes after epoch {epoch - 1}")
            scores = self._scores(batch)
            scores.retain_grad()
            loss = self.loss(scores, batch["labels"])
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            losses.append(loss.detach())
            if (step + 1) % SYNC_STEPS == 0:
                checked = self._check_finite(losses, checked, epoch)
            self.optimizer.step()
            self.schedule.step()
            zero_grads.append((scores.grad == 0).all(dim=1).sum())
            sizes.append(len(scores))
        self._check_finite(losses, checked, epoch)
        n = torch.tensor(sizes, dtype=torch.float64)
        total = float((torch.stack(losses).double().cpu() * n).sum())
        zero_grad = int(torch.stack(zero_grads).sum())
        return total / float(n.sum()), zero_grad / float(n.sum()), int(n.sum())

    def _check_finite(self, losses: list[Tensor], start: int, epoch: int) -> int:
        """Raise on the first non-finite loss from ``start`` on (one host sync); returns the next start."""
        if start == len(losses):
            return start
        recent = torch.stack(losses[start:]).float().cpu()
        bad = (~torch.isfinite(recent)).nonzero()
        if len(bad):
            step = start + int(bad[0])
            raise NonFiniteLoss(f"{self.config.loss}: loss is {losses[step].item()} at epoch {epoch}, batch {step}")
        return len(losses)

    @torch.no_grad()
    def validate(self, epoch: int) -> tuple[float, dict, np.ndarray]:
        """Validation loss, metrics and scores; batches stay on the device and come back to the host once."""
        self.model.eval()
        plan = batch_plan(self.val_split.n_images, max(self.config.batch_size, 256), False, self.config.seed, epoch)
        scores, labels, losses = [], [], []
        for batch in self._batches(self.val_split, plan):
            scores.append(self._scores(batch).float())
            labels.append(batch["labels"])
            losses.append(self.loss(scores[-1], labels[-1]).double() * len(scores[-1]))
        all_scores, all_labels = torch.cat(scores), torch.cat(labels)
        # A rule with parameters (RL's threshold) is fitted on this epoch's validation scores, as at the end.
        self.loss.fit_own_rule(all_scores, all_labels)
        metrics = MultiLabelMetrics(all_labels.shape[1])
        metrics.update(self.loss.predict(all_scores), all_labels)
        host_labels = all_labels.cpu().numpy()
        ranking = self.loss.ranking_scores(all_scores).double().cpu().numpy()
        # Scores that overflowed leave the ranking undefined; the training loss's own check stops such a run.
        defined = bool(np.isfinite(ranking).all())
        map_macro = ranking_summary(ranking, host_labels)["map_macro"] if defined else float("nan")
        summary = metrics.compute() | {"map_macro": map_macro}
        total = float(torch.stack(losses).sum())
        return total / self.val_split.n_images, summary, all_scores.cpu().numpy()

    # -- the whole run -----------------------------------------------------------------------------
    def run(self) -> pd.DataFrame:
        self.outdir.mkdir(parents=True, exist_ok=True)
        log.info(
            "loss %s, seed %d, architecture %s, device %s (CUDA_VISIBLE_DEVICES=%s), %d parameters, width %d, "
            "%s lr %g (%s schedule, %d warm-up epochs), train %d images, val %d images", self.config.loss,
            self.config.seed, self.config.architecture, self.device, os.environ.get("CUDA_VISIBLE_DEVICES", "unset"),
            count_parameters(self.model), self.config.width, self.config.optimizer, self.config.lr,
            self.config.schedule, self.config.warmup_epochs, self.train_split.n_images, self.val_split.n_images,
        )  # fmt: skip
        if self.resident is None:
            warn_if_uncached({split.split: split_bytes(split) for split in (self.train_split, self.val_split)})
        self.try_resume()
        if self.start_epoch == 1:  # a fresh start: no snapshot of another run may be published with this one's
            shutil.rmtree(self.outdir / SNAPSHOTS_IN_PROGRESS, ignore_errors=True)
            self.save_snapshot(0)  # the initial weights: where the trajectory starts
        previous = signal.signal(signal.SIGTERM, self._on_sigterm)
        try:
            scores = None
            for epoch in range(self.start_epoch, self.config.epochs + 1):
                started = time.perf_counter()
                train_loss, zero_grad, images = self.train_epoch(epoch)
                trained = time.perf_counter()
                val_loss, metrics, scores = self.validate(epoch)
                validated = time.perf_counter()
                row = {"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss}
                row |= {k: metrics[k] for k in HISTORY_COLUMNS if k in metrics}
                row |= {
                    "zero_grad_fraction": zero_grad,
                    "train_seconds": trained - started,
                    "val_seconds": validated - trained,
                    "images_per_second": images / (trained - started),
                }
                self.history.append(row)
                log.info(
                    "epoch %d: train loss %.4f, val loss %.4f, val micro-F1 %.4f, "
                    "%.1f s train (%.1f img/s), %.1f s val",
                    epoch, train_loss, val_loss, row["f1_micro"], row["train_seconds"], row["images_per_second"],
                    row["val_seconds"],
                )  # fmt: skip
                self.save_snapshot(epoch)
                self.save_checkpoint(epoch)
            if scores is None:  # resumed after the last epoch
                _, _, scores = self.validate(self.config.epochs)
            return self._finish(scores)
        finally:
            signal.signal(signal.SIGTERM, previous)

    def _on_sigterm(self, signum, frame) -> None:
        log.warning("SIGTERM: abandoning the current epoch; the last finished epoch is checkpointed")
        self._stop = True

    def _finish(self, val_scores: np.ndarray) -> pd.DataFrame:
        history = pd.DataFrame(self.history, columns=list(HISTORY_COLUMNS))
        baseline = constant_baseline(self.train_split.labels, self.val_split.labels)
        record = {
            "loss": self.config.loss,
            "architecture": self.config.architecture,
            "loss_params": self.config.loss_params,
            "config": asdict(self.config),
            "device": str(self.device),
            "hardware": hardware_description(self.device),
            "torch": torch.__version__,
            "parameters": count_parameters(self.model),
            "train_images": self.train_split.n_images,
            "val_images": self.val_split.n_images,
            "wall_seconds": float(history["train_seconds"].sum() + history["val_seconds"].sum()),
        }
        if hasattr(self.loss, "weights"):
            record["class_weights"] = self.loss.weights.cpu().tolist()
        out = self.outdir
        with atomic_outputs(*(out / name for name in MODEL_FILES.values())) as (
            model_path,
            history_path,
            scores_path,
            baseline_path,
            run_path,
        ):
            torch.save({"state_dict": self.model.state_dict(), "config": asdict(self.config),
                        "n_classes": self.n_classes, "own_rule": self.loss.own_rule}, model_path)  # fmt: skip
            history.to_csv(history_path, index=False)
            np.save(scores_path, val_scores.astype(np.float32))
            baseline_path.write_text(json.dumps(baseline, indent=2) + "\n")
            run_path.write_text(json.dumps(record, indent=2) + "\n")
        self._publish_snapshots()
        self.checkpoint_path.unlink(missing_ok=True)
        return history

    def _publish_snapshots(self) -> None:
        """Move the finished run's snapshots from ``SNAPSHOTS_IN_PROGRESS`` to ``SNAPSHOTS``."""
        count = len(snapshot_epochs(self.config.epochs, self.config.snapshots))
        if not count:
            return
        waiting, published = self.outdir / SNAPSHOTS_IN_PROGRESS, self.outdir / SNAPSHOTS
        published.mkdir(exist_ok=True)
        for number in range(count):
            if (waiting / snapshot(number)).exists():
                os.replace(waiting / snapshot(number), published / snapshot(number))
            elif not (published / snapshot(number)).exists():
                raise BenlossError(f"{waiting / snapshot(number)}: snapshot missing; retrain to measure the landscape")
        shutil.rmtree(waiting, ignore_errors=True)


def hardware_description(device: torch.device) -> str:
    """The accelerator's name, or the CPU's model and the threads used."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            model = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), model)
    except OSError:
        pass
    return f"{model}, {torch.get_num_threads()} thread(s)"


def load_model(path: Path, device: torch.device | str = "cpu") -> tuple[torch.nn.Module, TrainConfig]:
    """A trained model (in eval mode) and the configuration it was trained with."""
    state = torch.load(path, map_location=device, weights_only=False)
    config = TrainConfig(**state["config"])
    # Models saved before the architectures were all K-Branch CNNs, whose classifier gives the class count.
    n_classes = state.get("n_classes") or state["state_dict"]["classifier.weight"].shape[0]
    model = build_model(config.architecture, config.width, n_classes=n_classes)
    model.load_state_dict(state["state_dict"])
    return model.to(device).eval(), config


def load_own_rule(path: Path) -> dict:
    """The own-rule parameters fitted on the final validation scores (RL's threshold), saved with the model."""
    return torch.load(path, map_location="cpu", weights_only=False).get("own_rule", {})


def train(config: TrainConfig, encoded: Path, class_counts: Path, outdir: Path) -> pd.DataFrame:
    """Train (or resume) one model and write ``model.pt history.csv val_scores.npy baseline.json run.json``."""
    os.environ.setdefault("OMP_NUM_THREADS", str(config.threads))
    return Trainer(config, encoded, class_counts, outdir).run()
