"""``dlr-engine synth``: write a synthetic rhythm corpus (audio files plus labels.csv)."""
from __future__ import annotations

from pathlib import Path

from .synth import AUDIO_FORMATS, CORPUS_SAMPLE_RATE, write_corpus


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "synth", help="render a synthetic ballroom-like rhythm corpus with style/tempo/tag labels",
        description="Render clips 0..N-1 of the synthetic corpus SEED into DIR as mono audio "
                    "files plus DIR/labels.csv. The same seed always gives the same audio.")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR",
                        help="output folder (created if missing)")
    parser.add_argument("--n", type=int, required=True, help="number of clips")
    parser.add_argument("--seed", type=int, required=True, help="corpus seed (non-negative)")
    parser.add_argument("--seconds", type=float, default=30.0,
                        help="clip duration in seconds (default 30)")
    parser.add_argument("--sample-rate", type=int, default=CORPUS_SAMPLE_RATE,
                        help=f"Hz (default {CORPUS_SAMPLE_RATE})")
    parser.add_argument("--format", choices=tuple(AUDIO_FORMATS), default="wav",
                        help="audio format (default wav)")
    parser.set_defaults(func=_run)


def _run(args) -> int:
    csv_path = write_corpus(args.out, args.n, args.seed, seconds=args.seconds,
                            sample_rate=args.sample_rate, fmt=args.format)
    print(f"wrote {args.n} clips and {csv_path}")
    return 0
