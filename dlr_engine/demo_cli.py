"""``dlr-engine demo``: the main job end to end on built-in audio.

Renders the demo corpus (a few synthetic ballroom clips in WAV / FLAC / OGG, 44.1 and 48 kHz,
mono and stereo) and extracts DLR, log-mel and tempogram features plus the shipped default
model's style, tempo-class and embedding outputs from it, as ``extract`` does for any corpus.
"""
from __future__ import annotations

import json
from pathlib import Path


def register(subparsers) -> None:
    parser = subparsers.add_parser("demo", help="render the built-in demo audio and extract "
                                                "features and model outputs from it")
    parser.add_argument("--out", default="demo_out", help="folder for the audio and outputs")
    parser.add_argument("--model", default="default", help="as for extract (default: shipped)")
    parser.set_defaults(func=run)


def run(args) -> int:
    from .data.synth import demo_corpus
    from .engine import extract

    out = Path(args.out)
    paths = demo_corpus(out / "audio")
    print(f"demo corpus: {len(paths)} files in {out / 'audio'}")
    summary = extract([str(p) for p in paths], out=out / "features",
                      representations=("dlr", "mel", "tempogram"), model=args.model)
    print(json.dumps(summary, indent=2, default=str))
    return 0 if summary.get("failed", 0) == 0 else 1
