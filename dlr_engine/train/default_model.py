"""Train the shipped default model: the DLR source-task model (style + tempo class) on the
synthetic rhythm corpus, tested on a corpus seed never used in training.

    python -m dlr_engine.train.default_model --out dlr_engine/weights/default.safetensors

Training clips come from corpus ``TRAIN_SEED`` (validation: ``TRAIN_SEED + 1``), the held-out
test clips from ``TEST_SEED``. The best epoch by validation score is tested at each of
``--test-seconds`` (30 s is the extraction engine's segment) and written to ``--out`` with the
label names, the preprocessing, the training command and the held-out figures in its metadata.
Interrupted? Run the same command again with ``--resume``.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
from dataclasses import asdict
from pathlib import Path

from ..data.synth import SynthRhythmDataset
from ..models import registry
from .tasks import SourceTask
from .trainer import BEST, TrainConfig, evaluate, train

TRAIN_SEED = 1
TEST_SEED = 20171023
"""Corpus seed of the held-out test split; training and validation use TRAIN_SEED and TRAIN_SEED + 1."""
MODEL_SEED = 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m dlr_engine.train.default_model",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="where to write the .safetensors")
    parser.add_argument("--work", default="runs/default_model", help="checkpoints and log.jsonl")
    parser.add_argument("--clips", type=int, default=4000, help="training clips")
    parser.add_argument("--val-clips", type=int, default=360, help="validation clips")
    parser.add_argument("--test-clips", type=int, default=540, help="held-out test clips")
    parser.add_argument("--seconds", type=float, default=10.0, help="training clip length")
    parser.add_argument("--test-seconds", type=float, nargs="+", default=[30.0, 10.0],
                        help="held-out clip lengths; the first is the headline figure")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--backend", help="force a DLR op backend (default: automatic)")
    parser.add_argument("--resume", action="store_true", help="continue the run saved in --work")
    parser.add_argument("--no-progress", action="store_true")
    return parser.parse_args(argv)


def held_out(model, clips: int, seconds: float, batch_size: int, progress: bool) -> dict:
    """Accuracies and confusion matrices of ``model`` on ``clips`` clips of corpus ``TEST_SEED``."""
    metrics = evaluate(model, SourceTask(), SynthRhythmDataset(clips, TEST_SEED, seconds), batch_size,
                       progress=progress)
    return {"corpus_seed": TEST_SEED, "clips": clips, "seconds": seconds,
            **{key: value for key, value in metrics.items() if key != "score"}}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    config = TrainConfig(task="source-task", out=args.work, synthetic=args.clips, val_synthetic=args.val_clips,
                         data_seed=TRAIN_SEED, seconds=args.seconds, epochs=args.epochs,
                         batch_size=args.batch_size, lr=args.lr, seed=MODEL_SEED, backend=args.backend,
                         progress=not args.no_progress)
    trainer = train(config, resume=args.resume)
    model = registry.load_model(Path(args.work) / BEST, backend=args.backend)
    tests = [held_out(model, args.test_clips, seconds, args.batch_size, not args.no_progress)
             for seconds in args.test_seconds]
    for test in tests:
        print(f"held out, {test['clips']} clips of {test['seconds']:g} s (corpus seed {TEST_SEED}): "
              f"style accuracy {test['style_accuracy']:.4f}, "
              f"tempo-class accuracy {test['tempo_class_accuracy']:.4f}")
    best = max(trainer.history, key=lambda record: record["val"]["score"])
    command = shlex.join(["python", "-m", "dlr_engine.train.default_model",
                          *(argv if argv is not None else sys.argv[1:])])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    registry.save_model(model, args.out, metadata={
        "training_command": command,
        "training": json.dumps(asdict(config)),
        "train_corpus": json.dumps({"corpus_seed": TRAIN_SEED, "clips": args.clips, "seconds": args.seconds,
                                    "validation_corpus_seed": TRAIN_SEED + 1, "validation_clips": args.val_clips}),
        "best_epoch": json.dumps({key: value for key, value in best.items() if key != "val"}),
        "held_out": json.dumps(tests),
    })
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
