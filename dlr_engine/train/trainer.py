"""One trainer for both tasks (``tasks.py``): data, optimisation, validation, checkpoints.

Files in ``config.out``:
- ``last.safetensors``: the model after the last finished epoch (``registry.save_model``);
- ``state.pt``: what an exact resume needs besides the model: optimizer, LR scheduler, grad
  scaler, torch RNG state, finished epochs, best score, early-stopping count, history;
- ``best.safetensors``: the model of the best validation ``score``;
- ``log.jsonl``: one line per epoch (train loss, LR, throughput, validation metrics).

Deterministic with a seed on CPU: the model is initialised after ``torch.manual_seed(seed)`` and
each epoch's shuffle is drawn from ``(seed, epoch)``, so a run resumed from ``state.pt``
continues bit-identically. Multi-GPU: launch the same command with ``torchrun
--nproc_per_node=N``; every process trains on its shard (``DistributedSampler``) of each global
batch (N times ``batch_size``), batch norm uses the statistics of the global batch, and every
process validates on the whole validation set; rank 0 writes the files. N processes give the
loss curve of one process with N times the batch size. Mixed precision (bfloat16, or float16
with a gradient scaler) is used on CUDA only.
"""
from __future__ import annotations

import json
import math
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import ConcatDataset, DataLoader, Dataset, DistributedSampler
from tqdm import tqdm

from ..data.soundfont import SoundFontDrumDataset
from ..data.synth import SynthRhythmDataset
from ..io.atomic import write_atomic
from ..config import PAPER
from ..models import registry
from ..models.families import HEADS
from ..models.fcn import parse_input
from .augment import STRETCH, Augmented, check_rates
from .datasets import InMemory, LabelledFolder, split_rows
from .distributed import global_batch_norm, setup_distributed
from .tasks import TASKS

OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}
SCHEDULES = ("cosine", "step", "none")
STEP_GAMMA = 0.1
"""The ``step`` schedule multiplies the LR by this after each third of the run."""
LAST, BEST, STATE, LOG = "last.safetensors", "best.safetensors", "state.pt", "log.jsonl"


@dataclass
class TrainConfig:
    """Everything a run needs; ``asdict(config)`` is stored in ``state.pt``.

    task: ``source-task`` or ``tagger``.
    data: a folder holding ``labels.csv`` (as ``write_corpus`` writes it); ``val_fraction`` of
      its clips, drawn with ``seed``, validate. Or, without ``data``:
    synthetic: clips of the synthetic corpus rendered on the fly (corpus seed ``data_seed``,
      default ``seed``), validated on ``val_synthetic`` clips of corpus ``data_seed + 1``
      (default: a tenth, at least one batch). Test splits should use other corpus seeds.
    soundfont: with ``synthetic``, that many General MIDI drum grooves played through a SoundFont
      (``data.soundfont``, its ``train`` split, corpus ``data_seed``) added to the training clips,
      and ``val_soundfont`` (default: a tenth, at least one batch) of corpus ``data_seed + 1`` to
      the validation clips. They carry no style label (``NO_STYLE``): they train the tempo head.
    augment: augment every training clip on the fly (``augment.Augmented``, seeded by ``seed``,
      epoch and clip; labels follow the playback-rate change); the clips are then rendered or cut
      ``stretch[1]`` times longer than ``seconds`` and randomly cropped;
      ``augment_probability`` of the clips are augmented, the others only cropped.
    stretch: the (low, high) range of the augmentation's playback-rate change (log-uniform).
    seconds: clip length at 8 kHz (folder clips are cut to their first ``seconds``).
    in_memory: load or render every clip once and keep it in RAM (else decode each epoch).
    model: registry name of the model (default: the task's own, ``dlr_source`` or ``fcn``);
      any family of ``dlr_engine.models.names()`` trains on either task, with only the task's
      heads (its other heads are left out).
    input: the FCN's input (``mel``, ``dlr``, ``tempogram``, ``mel+dlr``), on either task.
    model_options: more constructor options of the model (e.g. ``{"dlr": {"channels": 8}}``).
    init: start from the weights of this ``.safetensors`` model (same architecture and labels;
      fine-tuning) instead of a random initialisation.
    patience: stop after this many epochs without a better validation score (None: never).
    backend: force a DLR op backend (``cpu``, ``torch``, ...).
    device: ``cpu``, ``cuda`` (default: ``cuda`` when available).
    """

    task: str = "source-task"
    out: str = "runs/train"
    data: str | None = None
    val_fraction: float = 0.1
    synthetic: int | None = None
    val_synthetic: int | None = None
    soundfont: int | None = None
    val_soundfont: int | None = None
    augment: bool = False
    augment_probability: float = 1.0
    stretch: tuple[float, float] = STRETCH
    data_seed: int | None = None
    seconds: float = 10.0
    in_memory: bool = True
    model: str | None = None
    input: str = "dlr"
    model_options: dict[str, Any] = field(default_factory=dict)
    init: str | None = None
    epochs: int = 10
    batch_size: int = 16
    lr: float = 1e-3
    optimizer: str = "adam"
    weight_decay: float = 0.0
    schedule: str = "cosine"
    patience: int | None = None
    seed: int = 0
    backend: str | None = None
    device: str | None = None
    amp: bool = True
    workers: int = 0
    progress: bool = True

    def __post_init__(self) -> None:
        choices = {"task": (self.task, tuple(TASKS)), "optimizer": (self.optimizer, tuple(OPTIMIZERS)),
                   "schedule": (self.schedule, SCHEDULES)}
        for name, (value, allowed) in choices.items():
            if value not in allowed:
                raise ValueError(f"{name} {value!r} is not one of {', '.join(allowed)}")
        if (self.model or TASKS[self.task].model_name) == "fcn":
            parse_input(self.input)
        check_rates(self.stretch)
        self.stretch = tuple(self.stretch)  # a list after a resume from state.pt


def build_datasets(config: TrainConfig) -> tuple[Dataset, Dataset]:
    """(training, validation) datasets of ``config``, held in memory if ``config.in_memory``."""
    if (config.data is None) == (config.synthetic is None):
        raise ValueError("give either data (a folder with labels.csv) or synthetic (a number of clips)")
    if config.soundfont and config.synthetic is None:
        raise ValueError("soundfont clips are added to synthetic ones: give synthetic too")
    # Augmentation crops its clips after a playback-rate change of up to stretch[1].
    train_seconds = math.ceil(config.seconds * config.stretch[1] * 100) / 100 if config.augment else config.seconds
    if config.data is not None:
        every = LabelledFolder(config.data, config.seconds)
        train_rows, val_rows = split_rows(len(every), config.val_fraction, config.seed)
        train_set = LabelledFolder(config.data, train_seconds, rows=train_rows)
        val_set = LabelledFolder(config.data, config.seconds, rows=val_rows)
    else:
        data_seed = config.seed if config.data_seed is None else config.data_seed
        n_val = config.val_synthetic or max(config.batch_size, config.synthetic // 10)
        train_set = SynthRhythmDataset(config.synthetic, data_seed, train_seconds)
        val_set = SynthRhythmDataset(n_val, data_seed + 1, config.seconds)
        if config.soundfont:
            n_val = config.val_soundfont or max(config.batch_size, config.soundfont // 10)
            train_set = ConcatDataset([train_set, SoundFontDrumDataset(config.soundfont, data_seed, train_seconds)])
            val_set = ConcatDataset([val_set, SoundFontDrumDataset(n_val, data_seed + 1, config.seconds)])
    if config.in_memory:
        train_set = InMemory(train_set, config.progress, desc="training clips")
        val_set = InMemory(val_set, config.progress, desc="validation clips")
    if config.augment:
        train_set = Augmented(train_set, config.seconds, config.seed, probability=config.augment_probability,
                              rates=config.stretch)
    return train_set, val_set


def build_model(config: TrainConfig) -> nn.Module:
    """The task's model, initialised from ``config.seed`` (or loaded from ``config.init``), with
    the task's label names."""
    task = TASKS[config.task]()
    name = config.model or task.model_name
    options = task.model_options()
    if name == "fcn":
        options["input"] = config.input
    if name == "fcn" or name in registry.FAMILIES:  # multi-head models: keep only this task's heads
        options = {head: 0 for head in HEADS} | options
    torch.manual_seed(config.seed)
    model = registry.get(name, **options, **config.model_options, backend=config.backend)
    if model.sample_rate != PAPER.sample_rate:
        raise ValueError(f"model {name!r} takes audio at {model.sample_rate} Hz but the training "
                         f"clips are at {PAPER.sample_rate} Hz; pass --model-options "
                         f"'{{\"sample_rate\": {PAPER.sample_rate}}}'")
    model.label_names = task.label_names
    if config.init:
        start = registry.load_model(config.init, backend=config.backend)
        here, there = (name, model.config()), (registry.name_of(start), start.config())
        if here != there or start.label_names != model.label_names:
            raise ValueError(f"init {config.init} is a {there} model with labels {start.label_names}, but "
                             f"this run trains a {here} model with labels {model.label_names}; "
                             f"give a model of the same architecture and task")
        model.load_state_dict(start.state_dict())
    return model


def _to(labels: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {key: value.to(device, non_blocking=True) for key, value in labels.items()}


@torch.no_grad()
def evaluate(model: nn.Module, task, dataset: Dataset, batch_size: int = 16, device: torch.device | str = "cpu",
             progress: bool = False) -> dict[str, Any]:
    """``task.metrics`` of ``model`` (in eval mode) on ``dataset``, plus the mean ``loss``."""
    model = getattr(model, "module", model)
    was_training = model.training
    model.eval()
    predictions, labels, loss_sum = defaultdict(list), defaultdict(list), 0.0
    loader = DataLoader(dataset, batch_size=batch_size)
    for audio, batch_labels in tqdm(loader, desc="validate", unit="batch", leave=False, disable=not progress):
        outputs = model(audio.to(device))
        loss, _ = task.loss(outputs, _to(batch_labels, torch.device(device)))
        loss_sum += loss.item() * len(audio)
        for key, value in task.predictions(outputs).items():
            predictions[key].append(value.cpu())
        for key, value in batch_labels.items():
            labels[key].append(value)
    model.train(was_training)
    result = task.metrics({key: torch.cat(value).numpy() for key, value in predictions.items()},
                          {key: torch.cat(value).numpy() for key, value in labels.items()})
    return {"loss": loss_sum / len(dataset), **result}


class Trainer:
    """Fits ``model`` on ``train_set`` for ``task``, validating on ``val_set`` each epoch.

    ``fit()`` runs the epochs (resuming from ``config.out/state.pt`` if ``resume``) and returns
    the history (one dict per epoch); ``step(audio, labels)`` is one optimisation step.
    """

    def __init__(self, task, model: nn.Module, train_set: Dataset, val_set: Dataset, config: TrainConfig) -> None:
        self.task, self.config = task, config
        self.rank, self.world, self.device = setup_distributed(config.device)
        self.out = Path(config.out)
        model = model.to(self.device)
        if self.world > 1:
            model = global_batch_norm(model, self.device)
        self.module = self.model = model
        if self.world > 1:
            self.model = nn.parallel.DistributedDataParallel(
                model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.train_set, self.val_set = train_set, val_set
        self.sampler = DistributedSampler(train_set, num_replicas=self.world, rank=self.rank, shuffle=True,
                                          seed=config.seed)
        self.loader = DataLoader(train_set, batch_size=config.batch_size, sampler=self.sampler,
                                 num_workers=config.workers,  # workers hold copies: not persistent with set_epoch
                                 persistent_workers=config.workers > 0 and not hasattr(train_set, "set_epoch"),
                                 pin_memory=self.device.type == "cuda")
        self.optimizer = OPTIMIZERS[config.optimizer](model.parameters(), lr=config.lr,
                                                      weight_decay=config.weight_decay)
        self.scheduler = self._scheduler(config.epochs * len(self.loader))
        self.amp_dtype = None
        if config.amp and self.device.type == "cuda":
            self.amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)
        self.epoch, self.best_score, self.bad_epochs, self.history = 0, -math.inf, 0, []

    def _scheduler(self, total_steps: int) -> torch.optim.lr_scheduler.LRScheduler:
        """Stepped once per batch: ``cosine`` anneals to 0 over the run, ``step`` multiplies the LR
        by ``STEP_GAMMA`` after each third of it, ``none`` keeps it."""
        if self.config.schedule == "cosine":
            return torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=max(1, total_steps))
        if self.config.schedule == "step":
            return torch.optim.lr_scheduler.StepLR(self.optimizer, step_size=max(1, total_steps // 3),
                                                   gamma=STEP_GAMMA)
        return torch.optim.lr_scheduler.ConstantLR(self.optimizer, factor=1.0, total_iters=0)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def step(self, audio: torch.Tensor, labels: dict[str, torch.Tensor]) -> tuple[float, dict[str, float]]:
        """Forward, loss, backward and optimizer + scheduler step on one batch; returns the
        loss and its parts. The gradients stay in the parameters' ``.grad`` afterwards."""
        audio, labels = audio.to(self.device, non_blocking=True), _to(labels, self.device)
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
            outputs = self.model(audio)
            loss, parts = self.task.loss(outputs, labels)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        return loss.item(), parts

    def train_epoch(self) -> dict[str, Any]:
        """One pass over this process's shard of the training set; returns the epoch's record."""
        self.model.train()
        self.sampler.set_epoch(self.epoch)
        if hasattr(self.train_set, "set_epoch"):  # seeded augmentation
            self.train_set.set_epoch(self.epoch)
        loss_sum, clips, start = 0.0, 0, time.perf_counter()
        bar = tqdm(self.loader, desc=f"epoch {self.epoch + 1}/{self.config.epochs}", unit="batch",
                   disable=not (self.config.progress and self.is_main))
        for audio, labels in bar:
            lr = self.optimizer.param_groups[0]["lr"]
            loss, _ = self.step(audio, labels)
            loss_sum += loss * len(audio)
            clips += len(audio)
            bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}")
        seconds = time.perf_counter() - start
        if self.world > 1:  # the mean over the global batches, as one process would log it
            totals = torch.tensor([loss_sum, clips], dtype=torch.float64, device=self.device)
            dist.all_reduce(totals)
            loss_sum, clips = totals[0].item(), totals[1].item()
        return {"epoch": self.epoch + 1, "train_loss": loss_sum / clips, "lr": self.optimizer.param_groups[0]["lr"],
                "seconds": seconds, "clips_per_second": clips / seconds}

    def fit(self, resume: bool = False) -> list[dict[str, Any]]:
        """Train up to ``config.epochs`` epochs (fewer with early stopping); with ``resume``,
        continue from the files in ``config.out`` if there are any."""
        if resume and (self.out / STATE).exists():
            self.load_checkpoint()
        while self.epoch < self.config.epochs and not self._patience_spent():
            record = self.train_epoch()
            record["val"] = evaluate(self.model, self.task, self.val_set, self.config.batch_size, self.device)
            improved = record["val"]["score"] > self.best_score or not self.history  # even a NaN score
            self.best_score = max(self.best_score, record["val"]["score"])
            self.bad_epochs = 0 if improved else self.bad_epochs + 1
            self.epoch += 1
            self.history.append(record)
            if self.is_main:
                self.save_checkpoint(best=improved)
                if self.config.progress:
                    tqdm.write(_summary(record))
            if self.world > 1:
                dist.barrier()
        return self.history

    def _patience_spent(self) -> bool:
        return self.config.patience is not None and self.bad_epochs >= self.config.patience

    def save_checkpoint(self, best: bool) -> None:
        """Write ``last.safetensors``, ``state.pt``, ``log.jsonl`` (and ``best.safetensors``)."""
        self.out.mkdir(parents=True, exist_ok=True)
        epoch = {"epoch": str(self.epoch)}
        registry.save_model(self.module, self.out / LAST, metadata=epoch)
        if best:
            registry.save_model(self.module, self.out / BEST, metadata={**epoch, "score": repr(self.best_score)})
        state = {
            "epoch": self.epoch, "best_score": self.best_score, "bad_epochs": self.bad_epochs,
            "history": self.history, "config": asdict(self.config),
            "model": {"name": registry.name_of(self.module), "options": self.module.config()},
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(), "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else [],
        }
        write_atomic(self.out / STATE, lambda tmp: torch.save(state, tmp))
        write_atomic(self.out / LOG, lambda tmp: tmp.write_text("".join(json.dumps(r) + "\n" for r in self.history)))

    def load_checkpoint(self) -> None:
        """Restore model, optimizer, scheduler, scaler, RNG and counters from ``config.out``."""
        state = torch.load(self.out / STATE, map_location="cpu", weights_only=True)
        here = {"name": registry.name_of(self.module), "options": self.module.config()}
        if state["model"] != here:
            raise ValueError(f"{self.out / STATE} holds a {state['model']} model, but this run builds {here}; "
                             f"resume with the same task and model options, or choose another --out")
        last = self.out / LAST
        saved_epoch = registry.metadata(last).get("epoch")
        if saved_epoch != str(state["epoch"]):
            raise ValueError(f"{last} is from epoch {saved_epoch} but {self.out / STATE} from epoch "
                             f"{state['epoch']} (interrupted while saving?); delete {self.out} to start over")
        from safetensors.torch import load_file

        self.module.load_state_dict(load_file(str(last), device=str(self.device)))
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["torch_rng"])
        if state["cuda_rng"]:
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        self.epoch, self.best_score, self.bad_epochs = state["epoch"], state["best_score"], state["bad_epochs"]
        self.history = state["history"]


def _summary(record: dict[str, Any]) -> str:
    val = ", ".join(f"{key} {value:.4f}" for key, value in record["val"].items() if isinstance(value, float))
    return (f"epoch {record['epoch']}: train loss {record['train_loss']:.4f}, "
            f"{record['clips_per_second']:.1f} clips/s; validation: {val}")


def train(config: TrainConfig, resume: bool = False) -> Trainer:
    """Build data and model from ``config``, fit (resuming if asked) and return the trainer;
    the models are in ``config.out`` (``best.safetensors``, ``last.safetensors``)."""
    _, world, _ = setup_distributed(config.device)
    try:
        train_set, val_set = build_datasets(config)
        trainer = Trainer(TASKS[config.task](), build_model(config), train_set, val_set, config)
        trainer.fit(resume=resume)
        return trainer
    finally:
        if world > 1 and dist.is_initialized():
            dist.destroy_process_group()
