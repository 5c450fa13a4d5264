"""Train the shipped default model: the DLR source-task model (style + tempo class) on the
synthetic rhythm corpus plus General MIDI drum grooves played through a SoundFont, augmented on
the fly, tested on corpus seeds never used in training and on an out-of-source set.

    python -m dlr_engine.train.default_model --out dlr_engine/weights/default.safetensors

Training clips come from corpus ``TRAIN_SEED`` of both sources (validation: ``TRAIN_SEED + 1``);
60 % of the training clips are augmented (``augment``: rate changes of 0.8-1.25 that move the BPM
label, crops, soft attacks, EQ, compression, reverb, noise, pitched accompaniment, gain). The
defaults are the shipped model's recipe: 3000 synthetic + 6000 SoundFont clips of 10 s, 12
epochs from random weights (about an hour on 2 cores). The best epoch by validation score is
tested on

- the synthetic held-out split, corpus ``TEST_SEED``, at each of ``--test-seconds`` (30 s is the
  extraction engine's segment);
- the out-of-source split: SoundFont grooves of corpus ``OUT_OF_SOURCE_SEED`` from the
  ``out_of_source`` split of ``data.drums`` (drum kits, groove families and a room / rendering
  chain that training never sees), at ``--out-of-source-seconds``;

and written to ``--out`` with the label names, the preprocessing, the training command, data and
seeds, and both evaluations (accuracies and confusion matrices) in its metadata. ``--init MODEL``
fine-tunes an earlier model instead of starting from random weights; the metadata then records
that model's sha256, training command and evaluations (``init``). Needs the
``soundfont`` extra and a GM SoundFont (``data.soundfont``). Interrupted? Run the same command
again with ``--resume``.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import shlex
import sys
from dataclasses import asdict
from pathlib import Path

from torch.utils.data import Dataset

from ..data.soundfont import SoundFontDrumDataset, find_soundfont
from ..data.synth import SynthRhythmDataset
from ..models import registry
from .tasks import SourceTask
from .trainer import BEST, TrainConfig, evaluate, train

TRAIN_SEED = 1
TEST_SEED = 20171023
"""Corpus seed of the held-out test split; training and validation use TRAIN_SEED and TRAIN_SEED + 1."""
OUT_OF_SOURCE_SEED = 20260416
"""Corpus seed of the out-of-source split (``drums.SPLITS["out_of_source"]``)."""
MODEL_SEED = 0
RECIPE_STRETCH = (0.8, 1.25)
"""The recipe's playback-rate range (wider than ``augment.STRETCH``): each groove is heard at
tempi up to 25 % apart, with its label moved, so the beat rate rather than the pattern sets the
class."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m dlr_engine.train.default_model",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help="where to write the .safetensors (required unless --evaluate)")
    parser.add_argument("--work", default="runs/default_model", help="checkpoints and log.jsonl")
    parser.add_argument("--clips", type=int, default=3000, help="synthetic training clips")
    parser.add_argument("--soundfont-clips", type=int, default=6000, help="SoundFont training clips")
    parser.add_argument("--val-clips", type=int, default=360, help="synthetic validation clips")
    parser.add_argument("--val-soundfont-clips", type=int, default=240, help="SoundFont validation clips")
    parser.add_argument("--test-clips", type=int, default=540, help="synthetic held-out test clips")
    parser.add_argument("--out-of-source-clips", type=int, default=320, help="out-of-source test clips")
    parser.add_argument("--seconds", type=float, default=10.0, help="training clip length")
    parser.add_argument("--test-seconds", type=float, nargs="+", default=[30.0, 10.0],
                        help="held-out clip lengths; the first is the headline figure")
    parser.add_argument("--out-of-source-seconds", type=float, nargs="+", default=[30.0],
                        help="out-of-source clip lengths; the first is the headline figure")
    parser.add_argument("--no-augment", action="store_true", help="train on the clips as rendered")
    parser.add_argument("--augment-probability", type=float, default=0.6,
                        help="share of the training clips augmented (the others are only cropped)")
    parser.add_argument("--stretch", type=float, nargs=2, default=RECIPE_STRETCH, metavar=("LOW", "HIGH"),
                        help="range of the augmentation's playback-rate change (the BPM label moves with it)")
    parser.add_argument("--init", type=Path, metavar="MODEL",
                        help="fine-tune this .safetensors source-task model (e.g. an earlier default) "
                             "instead of training from a random initialisation")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--backend", help="force a DLR op backend (default: automatic)")
    parser.add_argument("--resume", action="store_true", help="continue the run saved in --work")
    parser.add_argument("--evaluate", metavar="MODEL",
                        help="train nothing: print both evaluations of MODEL (a .safetensors, or default)")
    parser.add_argument("--no-progress", action="store_true")
    return parser.parse_args(argv)


def _test(model, dataset: Dataset, batch_size: int, progress: bool, **description) -> dict:
    metrics = evaluate(model, SourceTask(), dataset, batch_size, progress=progress)
    return {**description, **{key: value for key, value in metrics.items() if key != "score"}}


def held_out(model, clips: int, seconds: float, batch_size: int, progress: bool) -> dict:
    """Accuracies and confusion matrices of ``model`` on ``clips`` clips of synthetic corpus
    ``TEST_SEED``."""
    return _test(model, SynthRhythmDataset(clips, TEST_SEED, seconds), batch_size, progress,
                 source="synth", corpus_seed=TEST_SEED, clips=clips, seconds=seconds)


def out_of_source(model, clips: int, seconds: float, batch_size: int, progress: bool) -> dict:
    """Tempo-class accuracy and confusion matrix of ``model`` on ``clips`` clips of the SoundFont
    corpus ``OUT_OF_SOURCE_SEED``, ``out_of_source`` split (no style labels)."""
    dataset = SoundFontDrumDataset(clips, OUT_OF_SOURCE_SEED, seconds, split="out_of_source")
    return _test(model, dataset, batch_size, progress, source="soundfont out_of_source",
                 corpus_seed=OUT_OF_SOURCE_SEED, clips=clips, seconds=seconds)


def _report(name: str, test: dict) -> str:
    style = f"style accuracy {test['style_accuracy']:.4f}, " if "style_accuracy" in test else ""
    return (f"{name}, {test['clips']} clips of {test['seconds']:g} s (corpus seed {test['corpus_seed']}): "
            f"{style}tempo-class accuracy {test['tempo_class_accuracy']:.4f}; "
            f"tempo confusion {test['tempo_class_confusion']}")


def evaluations(model, args: argparse.Namespace) -> tuple[list[dict], list[dict]]:
    """The held-out (synthetic) and out-of-source evaluations of ``model``, printed."""
    progress = not args.no_progress
    tests = [held_out(model, args.test_clips, seconds, args.batch_size, progress) for seconds in args.test_seconds]
    foreign = [out_of_source(model, args.out_of_source_clips, seconds, args.batch_size, progress)
               for seconds in args.out_of_source_seconds]
    for test in tests:
        print(_report("held out (synthetic)", test))
    for test in foreign:
        print(_report("out of source (SoundFont: other kits, grooves, room)", test))
    return tests, foreign


def _describe_init(path: Path) -> dict:
    """What a fine-tuned model started from: the file's name and sha256, and the training command,
    evaluations and own ``init`` its metadata records (a chain of fine-tunes back to its start)."""
    meta = registry.metadata(path)
    return {"file": path.name, "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            **{key: meta[key] for key in ("training_command", "train_corpus", "held_out", "out_of_source", "init")
               if key in meta}}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    soundfont = find_soundfont()  # fail before training if the SoundFont source cannot run
    if args.evaluate:
        evaluations(registry.load_model(args.evaluate, backend=args.backend), args)
        return 0
    if args.out is None:
        raise SystemExit("--out is required (where to write the trained model)")
    config = TrainConfig(task="source-task", out=args.work, synthetic=args.clips, val_synthetic=args.val_clips,
                         soundfont=args.soundfont_clips, val_soundfont=args.val_soundfont_clips,
                         augment=not args.no_augment, augment_probability=args.augment_probability,
                         stretch=args.stretch,
                         init=None if args.init is None else str(args.init),
                         data_seed=TRAIN_SEED, seconds=args.seconds,
                         epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=MODEL_SEED,
                         backend=args.backend, progress=not args.no_progress)
    trainer = train(config, resume=args.resume)
    model = registry.load_model(Path(args.work) / BEST, backend=args.backend)
    tests, foreign = evaluations(model, args)
    best = max(trainer.history, key=lambda record: record["val"]["score"])
    command = shlex.join(["python", "-m", "dlr_engine.train.default_model",
                          *(argv if argv is not None else sys.argv[1:])])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    registry.save_model(model, args.out, metadata={
        "training_command": command,
        "training": json.dumps(asdict(config)),
        "train_corpus": json.dumps({
            "corpus_seed": TRAIN_SEED, "clips": args.clips, "seconds": args.seconds,
            "validation_corpus_seed": TRAIN_SEED + 1, "validation_clips": args.val_clips,
            "soundfont": {"file": soundfont.name, "split": "train", "corpus_seed": TRAIN_SEED,
                          "clips": args.soundfont_clips, "validation_corpus_seed": TRAIN_SEED + 1,
                          "validation_clips": args.val_soundfont_clips},
            "augment": config.augment, "augment_seed": MODEL_SEED, "stretch": list(config.stretch)}),
        "best_epoch": json.dumps({key: value for key, value in best.items() if key != "val"}),
        "held_out": json.dumps(tests),
        "out_of_source": json.dumps(foreign),
        **({"init": json.dumps(_describe_init(args.init))} if args.init else {}),
    })
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
