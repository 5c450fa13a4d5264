"""dlr-bench suite ``models``: held-out style and tempo-class accuracy of every model of the
registry, and of the FCN on mel, DLR, tempogram and mel+DLR inputs (the shape of the DLR paper's
Table 1 / Fig. 3), each trained by the engine's trainer on the synthetic rhythm corpus (issue 8's
research table).

The protocol is the same for every row and was fixed before any result was seen; nothing is
tuned on the test split:

- data (``SETTINGS``): ``SynthRhythmDataset`` clips of ``seconds`` at 8 kHz, rendered once and
  shared by every row; training corpus seed ``data_seed`` and validation corpus ``data_seed + 1``
  (the trainer's own split, ``trainer.build_datasets``), test corpus ``data_seed + 2``
  (``TEST_SEED_OFFSET``: clips that neither training nor model selection saw). 8 s is the
  shortest clip every family takes (``pons``: one 250-frame patch; ``samplecnn``: 59049 samples).
- training: ``trainer.Trainer`` on the ``source-task`` (style + tempo-class cross-entropy) with the
  trainer's defaults (Adam, lr 1e-3, cosine schedule, batch ``batch_size``), model seed ``seed``,
  every epoch of ``epochs`` (no early stopping); each model at its paper configuration, with
  ``Entry.options`` only where the 8 kHz corpus needs them (``mcclstm`` and ``ncms`` take 8 kHz
  audio, ``songsummary`` summarises 4 s segments of the 8 s clips instead of 29.1 s).
- evaluation: the epoch with the best validation score (``best.safetensors``, mean of the two
  accuracies) on the test split (``trainer.evaluate``).
- NCMS forest rows (Jeong & Lee's classifier): 5 s segment features (per-segment mean and
  variance of the last hidden layer, ``ncms_features``) of the two trained NCMS DNNs, ``trees``
  random-forest trees per label (style, tempo class) fitted on the training split, a majority vote
  of the segments per clip (``models.ncms.NCMSForestClassifier``); temporal, spectral and the two
  combined.

Row fields (``ROW_FIELDS``): ``model`` (row name), ``registry`` (model name), ``input`` (FCN input),
``options`` (JSON model options), ``params`` (trainable parameters; forests: of the DNNs feeding
them), ``epochs``, ``seconds_per_epoch`` (training pass only, validation excluded),
``style_accuracy``, ``tempo_accuracy`` (test split), ``out_of_source_tempo_accuracy`` (tempo class
on SoundFont grooves of the default model's out-of-source split: ``default_model.out_of_source``,
None without a SoundFont), ``val_score`` (best validation score),
``status`` (ok | error) and ``note``.
"""
from __future__ import annotations

import json
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from dlr_engine.data import soundfont
from dlr_engine.data.synth import SynthRhythmDataset
from dlr_engine.models import ncms, registry
from dlr_engine.models.fcn import INPUT_KINDS
from dlr_engine.train.datasets import InMemory
from dlr_engine.train.tasks import TASKS
from dlr_engine.train.default_model import OUT_OF_SOURCE_SEED
from dlr_engine.train.trainer import BEST, TrainConfig, Trainer, build_datasets, build_model, evaluate

from . import machine
from .harness import bench_device

TASK = "source-task"
TEST_SEED_OFFSET = 2
"""The test corpus seed is ``data_seed + 2``: the trainer trains on ``data_seed`` and validates
on ``data_seed + 1``."""
CORPUS_RATE = 8000
"""Sample rate of the trainer's clips."""


@dataclass(frozen=True)
class Setting:
    """Corpus and training budget of a run, the same for every row."""

    train_clips: int
    val_clips: int
    test_clips: int
    epochs: int
    seconds: float = 8.0
    batch_size: int = 16
    data_seed: int = 1
    seed: int = 0
    trees: int = ncms.DEFAULT_TREES


SETTINGS = {True: Setting(train_clips=48, val_clips=16, test_clips=48, epochs=2),
            False: Setting(train_clips=384, val_clips=96, test_clips=384, epochs=4)}
"""Setting per quick flag: quick ~1-2 min, full ~15-25 min on 2 CPU cores."""


@dataclass(frozen=True)
class Entry:
    """One trained row: registry ``model``, FCN ``input``, extra model ``options``."""

    name: str
    model: str
    input: str = "dlr"
    options: dict[str, Any] = field(default_factory=dict)


ENTRIES = (
    Entry("dlr_source", "dlr_source"),
    *(Entry(f"fcn {kind}", "fcn", input=kind) for kind in (*INPUT_KINDS, "mel+dlr")),
    Entry("crnn", "crnn"),
    Entry("samplecnn", "samplecnn"),
    Entry("pons", "pons"),
    Entry("mcclstm", "mcclstm", options={"sample_rate": CORPUS_RATE}),
    Entry("pooled", "pooled"),
    Entry("songsummary", "songsummary", options={"segment_seconds": 4.0}),
    *(Entry(f"ncms {dnn} dnn", "ncms", options={"variant": dnn, "sample_rate": CORPUS_RATE})
      for dnn in ("temporal", "spectral")),
)
"""The trained rows, in table order; the forest rows follow."""
ROW_FIELDS = ("model", "registry", "input", "options", "params", "epochs", "seconds_per_epoch",
              "style_accuracy", "tempo_accuracy", "out_of_source_tempo_accuracy", "val_score", "status", "note")


@dataclass
class Splits:
    """The run's clips, in memory: training, validation (the trainer's) and test."""

    train: InMemory
    val: InMemory
    test: InMemory
    out_of_source: InMemory | None = None
    """``test_clips`` SoundFont grooves of the default model's out-of-source split (other kits,
    grooves and room than any training data; tempo labels only), None without a SoundFont."""


def splits(setting: Setting) -> Splits:
    train, val = build_datasets(base_config(setting))
    test = InMemory(SynthRhythmDataset(setting.test_clips, setting.data_seed + TEST_SEED_OFFSET,
                                       setting.seconds), progress=False)
    foreign = None if soundfont.availability() else InMemory(soundfont.SoundFontDrumDataset(
        setting.test_clips, OUT_OF_SOURCE_SEED, setting.seconds, split="out_of_source"), progress=False)
    return Splits(train, val, test, foreign)


def base_config(setting: Setting, out: str = "", device: str = "cpu") -> TrainConfig:
    """The trainer's configuration of every row (``out``: its checkpoint folder)."""
    return TrainConfig(task=TASK, out=out, synthetic=setting.train_clips, val_synthetic=setting.val_clips,
                       data_seed=setting.data_seed, seconds=setting.seconds, epochs=setting.epochs,
                       batch_size=setting.batch_size, seed=setting.seed, device=device, progress=False)


def parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def _row(**values: Any) -> dict[str, Any]:
    row = dict.fromkeys(ROW_FIELDS)
    row.update({"status": "ok", "note": "", **values})
    return row


def _error_row(name: str, model: str, exc: Exception) -> dict[str, Any]:
    last = traceback.format_exception_only(exc)[-1].strip()
    return _row(model=name, registry=model, status="error", note=last[:300])


def train_entry(entry: Entry, setting: Setting, data: Splits, device: str,
                out: Path) -> tuple[dict[str, Any], nn.Module]:
    """Train ``entry`` with the trainer, evaluate its best epoch on the test split; returns the
    row and that model (eval mode, on ``device``)."""
    config = replace(base_config(setting, str(out / entry.name.replace(" ", "_")), device),
                     model=entry.model, input=entry.input, model_options=dict(entry.options))
    task = TASKS[TASK]()
    trainer = Trainer(task, build_model(config), data.train, data.val, config)
    history = trainer.fit()
    model = registry.load_model(trainer.out / BEST).to(device)
    test = evaluate(model, task, data.test, setting.batch_size, device)
    row = _row(model=entry.name, registry=entry.model, input=entry.input if entry.model == "fcn" else None,
               options=json.dumps(entry.options), params=parameters(model), epochs=len(history),
               seconds_per_epoch=float(np.mean([record["seconds"] for record in history])),
               style_accuracy=test["style_accuracy"], tempo_accuracy=test["tempo_class_accuracy"],
               out_of_source_tempo_accuracy=None if data.out_of_source is None else evaluate(
                   model, task, data.out_of_source, setting.batch_size, device)["tempo_class_accuracy"],
               val_score=trainer.best_score)
    return row, model


@torch.no_grad()
def segment_features(model: nn.Module, dataset: InMemory, batch_size: int, device: str) -> list[np.ndarray]:
    """Per clip of ``dataset`` the (segments, features) ``ncms_features`` of an ``ncms`` model."""
    features = []
    for audio, _ in DataLoader(dataset, batch_size=batch_size):
        features += list(model(audio.to(device))["ncms_features"].cpu().numpy())
    return features


def forest_rows(dnn_models: dict[str, nn.Module], setting: Setting, data: Splits,
                device: str) -> list[dict[str, Any]]:
    """One row per NCMS variant: forests on the segment features of the trained DNN model(s)
    ``dnn_models`` (variant -> ``ncms`` model), fitted on the training split, voted per test clip."""
    features = {name: [segment_features(model, split, setting.batch_size, device)
                       for split in (data.train, data.test)] for name, model in dnn_models.items()}
    labels = {"style": "style_accuracy", "tempo_class": "tempo_accuracy"}
    rows = []
    for variant in ncms.VARIANTS:
        name = f"ncms forest {variant}"
        parts = ["temporal", "spectral"] if variant == "combined" else [variant]
        missing = [part for part in parts if part not in dnn_models]
        if missing:
            rows.append(_row(model=name, registry="ncms", status="error",
                             note=f"the {' and '.join(missing)} DNN did not train"))
            continue
        train_x, test_x = ([np.concatenate(clip, axis=-1) for clip in zip(*(features[p][k] for p in parts))]
                           for k in (0, 1))
        dnns = {part: dnn_models[part].dnns[part] for part in parts}
        accuracies, started = {}, time.perf_counter()
        for label, column in labels.items():
            forest = ncms.NCMSForestClassifier(variant, **dnns, n_estimators=setting.trees,
                                               random_state=setting.seed)
            forest.fit_features(train_x, data.train.labels[label].numpy())
            predicted = forest.predict_features(test_x)
            accuracies[column] = float(np.mean(predicted == data.test.labels[label].numpy()))
        rows.append(_row(model=name, registry="ncms", options=json.dumps({"variant": variant}),
                         params=sum(parameters(dnn) for dnn in dnns.values()), **accuracies,
                         note=f"{setting.trees}-tree forests (style, tempo class) on the 5 s segment "
                              f"features of the DNN row(s) above, majority vote per clip; fitted in "
                              f"{time.perf_counter() - started:.1f} s"))
    return rows


def run(quick: bool) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Every entry, then the forest rows; returns (rows, header). Progress goes to stderr."""
    setting = SETTINGS[quick]
    device = bench_device()
    header = machine.describe(device)
    header["setting"] = {**asdict(setting), "command": "dlr-bench models" + " --quick" * quick}
    for line in header_lines(header):
        print(line, file=sys.stderr)
    data = splits(setting)
    rows, dnn_models = [], {}
    with tempfile.TemporaryDirectory(prefix="dlr-bench-models-") as out:
        for entry in ENTRIES:
            started = time.perf_counter()
            try:
                row, model = train_entry(entry, setting, data, device, Path(out))
            except Exception as exc:  # reported in the row; one model's failure must not end the run
                row, model = _error_row(entry.name, entry.model, exc), None
            if entry.model == "ncms" and model is not None:
                dnn_models[entry.options["variant"]] = model
            rows.append(row)
            _progress(row, time.perf_counter() - started)
    started = time.perf_counter()
    try:
        forests = forest_rows(dnn_models, setting, data, device)
    except Exception as exc:  # as above
        forests = [_error_row("ncms forest", "ncms", exc)]
    for row in forests:
        _progress(row, time.perf_counter() - started)
    header["load_average_end"] = machine.load_average()
    return rows + forests, header


def _progress(row: dict[str, Any], seconds: float) -> None:
    shown = (f"style {row['style_accuracy']:.3f}, tempo {row['tempo_accuracy']:.3f}"
             if row["status"] == "ok" else f"{row['status']}: {row['note']}")
    print(f"  {row['model']}: {shown} ({seconds:.0f} s)", file=sys.stderr, flush=True)


# --- formatting (``report.format_table`` / ``to_markdown`` with these columns and lines) ------

def _fmt(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


TABLE_COLUMNS = (
    ("model", lambda r: r["model"]),
    ("params", lambda r: _fmt(r["params"], ",d")),
    ("s / epoch", lambda r: _fmt(r["seconds_per_epoch"], ".1f")),
    ("style acc", lambda r: _fmt(r["style_accuracy"], ".3f")),
    ("tempo acc", lambda r: _fmt(r["tempo_accuracy"], ".3f")),
    ("tempo acc out of source", lambda r: _fmt(r["out_of_source_tempo_accuracy"], ".3f")),
    ("status", lambda r: r["status"] if r["status"] == "ok" else f"{r['status']}: {r['note']}"),
)


def header_lines(header: dict[str, Any]) -> list[str]:
    """The machine (without the peak-memory method: no memory is measured) and the protocol."""
    setting = header["setting"]
    options = "; ".join(f"{entry.name} {json.dumps(entry.options)}" for entry in ENTRIES if entry.options)
    return [line for line in machine.header_lines(header) if not line.startswith("peak memory")] + [
        f"{TASK} on the synthetic corpus, clips of {setting['seconds']:g} s at {CORPUS_RATE} Hz: "
        f"{setting['train_clips']} training (seed {setting['data_seed']}), {setting['val_clips']} "
        f"validation (seed {setting['data_seed'] + 1}; picks the epoch), {setting['test_clips']} test "
        f"(seed {setting['data_seed'] + TEST_SEED_OFFSET}; the accuracies); tempo acc out of source: "
        f"{setting['test_clips']} SoundFont drum grooves of the out-of-source split (seed {OUT_OF_SOURCE_SEED}; "
        f"kits, grooves and room no training saw; '-' without a SoundFont)",
        f"trainer: epochs {setting['epochs']}, batch {setting['batch_size']}, Adam lr 1e-3, cosine "
        f"schedule, model seed {setting['seed']}; every model at its defaults but {options}",
        f"ncms forest rows: {setting['trees']}-tree random forests (style, tempo class) on the 5 s "
        f"segment features of the ncms DNN rows, majority vote per clip; s / epoch is the training "
        f"pass only; reproduce: {setting['command']}",
    ]
