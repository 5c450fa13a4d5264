"""``dlr-engine train source-task|tagger``: train the DLR paper's source-task model or an FCN
tagger on a labelled folder or on the synthetic rhythm corpus (see ``trainer.TrainConfig``).
Multi-GPU: ``torchrun --nproc_per_node=N -m dlr_engine train ...``."""
from __future__ import annotations

import argparse
import json

from ..models.fcn import INPUT_KINDS
from ..models.registry import names as registry_names
from .trainer import OPTIMIZERS, SCHEDULES, TrainConfig, train

DEFAULTS = TrainConfig()


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train", help="train the source-task model (style + tempo class) or a tagger",
        description=__doc__.split("\n\n")[0])
    parser.add_argument("task", choices=("source-task", "tagger"),
                        help="source-task: DLR -> conv blocks -> style and tempo-class heads; "
                             "tagger: Choi 2016 FCN with sigmoid tags")
    data = parser.add_mutually_exclusive_group(required=True)
    data.add_argument("--data", metavar="DIR", help="folder with audio and labels.csv (`dlr-engine synth`)")
    data.add_argument("--synthetic", type=int, metavar="N", help="render N synthetic clips on the fly")
    parser.add_argument("--val-synthetic", type=int, metavar="N",
                        help="synthetic validation clips (default: a tenth of --synthetic)")
    parser.add_argument("--soundfont", type=int, metavar="N",
                        help="with --synthetic: add N General MIDI drum grooves played through a "
                             "SoundFont (tempo labels only; needs the soundfont extra)")
    parser.add_argument("--val-soundfont", type=int, metavar="N",
                        help="SoundFont validation clips (default: a tenth of --soundfont)")
    parser.add_argument("--augment", action="store_true",
                        help="augment training clips on the fly (rate change moving the BPM label, "
                             "crop, EQ, compression, reverb, noise, accompaniment, gain)")
    parser.add_argument("--augment-probability", type=float, default=DEFAULTS.augment_probability,
                        help="with --augment: share of the clips augmented (the others are only cropped)")
    parser.add_argument("--stretch", type=float, nargs=2, default=DEFAULTS.stretch, metavar=("LOW", "HIGH"),
                        help="with --augment: range of the playback-rate change (the BPM label moves with it)")
    parser.add_argument("--data-seed", type=int, help="synthetic corpus seed (default: --seed); "
                                                      "validation uses seed + 1")
    parser.add_argument("--val-fraction", type=float, default=DEFAULTS.val_fraction,
                        help="share of --data clips held out for validation")
    parser.add_argument("--seconds", type=float, default=DEFAULTS.seconds, help="clip length in seconds")
    parser.add_argument("--model", default=None, choices=registry_names(),
                        help="model by registry name (default: dlr_source for source-task, fcn "
                             "for tagger)")
    parser.add_argument("--input", default=DEFAULTS.input,
                        help=f"FCN input (tagger, or --model fcn): {', '.join(INPUT_KINDS)}, or two "
                             "joined by '+' (mel+dlr)")
    parser.add_argument("--model-options", type=json.loads, default={}, metavar="JSON",
                        help='extra model options, e.g. \'{"dlr": {"channels": 8}}\'')
    parser.add_argument("--init", metavar="MODEL", help="start from this .safetensors model's weights "
                                                          "(same architecture and labels: fine-tuning)")
    parser.add_argument("--epochs", type=int, default=DEFAULTS.epochs)
    parser.add_argument("--batch-size", type=int, default=DEFAULTS.batch_size)
    parser.add_argument("--lr", type=float, default=DEFAULTS.lr)
    parser.add_argument("--optimizer", choices=tuple(OPTIMIZERS), default=DEFAULTS.optimizer)
    parser.add_argument("--weight-decay", type=float, default=DEFAULTS.weight_decay)
    parser.add_argument("--schedule", choices=SCHEDULES, default=DEFAULTS.schedule)
    parser.add_argument("--patience", type=int, help="early stopping: epochs without improvement")
    parser.add_argument("--seed", type=int, default=DEFAULTS.seed)
    parser.add_argument("--out", default=DEFAULTS.out, metavar="DIR", help="checkpoints and log.jsonl")
    parser.add_argument("--resume", action="store_true", help="continue the run saved in --out")
    parser.add_argument("--backend", help="force a DLR op backend (cpu, torch, triton, cuda)")
    parser.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--workers", type=int, default=DEFAULTS.workers, help="DataLoader workers")
    parser.add_argument("--stream", action="store_true",
                        help="decode / render clips every epoch instead of holding them in RAM")
    parser.add_argument("--no-amp", action="store_true", help="no mixed precision on CUDA")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(func=run)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    return TrainConfig(
        task=args.task, out=args.out, data=args.data, val_fraction=args.val_fraction,
        synthetic=args.synthetic, val_synthetic=args.val_synthetic, soundfont=args.soundfont,
        val_soundfont=args.val_soundfont, augment=args.augment, augment_probability=args.augment_probability,
        stretch=args.stretch,
        data_seed=args.data_seed,
        seconds=args.seconds, in_memory=not args.stream, model=args.model, input=args.input, model_options=args.model_options,
        init=args.init,
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, optimizer=args.optimizer,
        weight_decay=args.weight_decay, schedule=args.schedule, patience=args.patience, seed=args.seed,
        backend=args.backend, device=args.device, amp=not args.no_amp, workers=args.workers,
        progress=not args.no_progress)


def run(args: argparse.Namespace) -> int:
    trainer = train(config_from_args(args), resume=args.resume)
    if trainer.is_main and trainer.history:
        print(f"best validation score {trainer.best_score:.4f}; models in {trainer.out}")
    return 0
